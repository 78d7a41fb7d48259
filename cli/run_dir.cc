#include "cli/run_dir.h"

#include <fstream>
#include <sstream>

#include "proto/json/json_line.h"
#include "qsr/v1/run_log.pb.h"

namespace qsr {
namespace {

// The run log's lines carry fields of their own ("generation", "elapsed_s") besides the
// protocol message's, and a newer qsr may add more.
JsonLineOptions LineOptions(std::vector<std::string> required_numbers) {
  JsonLineOptions options;
  options.ignore_unknown_fields = true;
  options.required_numbers = std::move(required_numbers);
  return options;
}

}  // namespace

absl::StatusOr<RunSummary> ParseRunSummary(const std::string& json) {
  JsonLineOptions options;
  options.ignore_unknown_fields = true;
  absl::StatusOr<v1::RunLogSummary> read = ParseJsonLine<v1::RunLogSummary>(json, options);
  if (!read.ok()) return read.status();
  RunSummary s;
  s.run_id = read->run_id();
  s.state = read->state();
  s.model = read->model();
  s.has_model = read->has_model();
  s.optimizer = read->optimizer();
  s.elapsed_s = read->has_elapsed_s() ? read->elapsed_s() : -1;
  s.test_acc = read->has_test_acc() ? read->test_acc() : -1;
  s.rounds = read->has_rounds() ? read->rounds() : -1;
  s.bytes_per_worker = read->has_bytes_per_worker() ? read->bytes_per_worker() : -1;
  return s;
}

absl::StatusOr<v1::RoundRecord> ParseRoundLine(const std::string& line) {
  return ParseJsonLine<v1::RoundRecord>(line, LineOptions({"step", "h", "lr", "train_loss"}));
}

absl::StatusOr<v1::EvalReport> ParseEvalLine(const std::string& line) {
  return ParseJsonLine<v1::EvalReport>(line, LineOptions({"step", "test_acc"}));
}

absl::StatusOr<std::vector<v1::RoundRecord>> ReadRoundsJsonl(const std::string& path) {
  return ReadJsonLines<v1::RoundRecord>(path, LineOptions({"step", "h", "lr", "train_loss"}));
}

absl::StatusOr<std::vector<v1::EvalReport>> ReadEvalsJsonl(const std::string& path) {
  return ReadJsonLines<v1::EvalReport>(path, LineOptions({"step", "test_acc"}));
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace qsr
