// The files a coordinator writes into its run directory, read back: rounds.jsonl and evals.jsonl
// (one JSON object per line: a RoundRecord or an EvalReport, with a few fields more such as
// "generation" or "elapsed_s") and summary.json (one JSON object).
//
// Parsed by proto/json/json_line.h (protobuf's JSON parser): the lines into the protocol's
// messages, which have every field a reader needs, and summary.json into qsr.v1.RunLogSummary.
// Keys the message lacks are skipped (the logs' own, and a newer qsr's). Fields a reader needs
// must be present as numbers: a record missing one, or with null (a non-finite value), is an
// error, not a row of zeros. Pure functions apart from the file reads; thread-safe.
#ifndef QSR_CLI_RUN_DIR_H_
#define QSR_CLI_RUN_DIR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

// What summary.json says about the run. Absent numbers are -1, absent strings empty.
struct RunSummary {
  std::string run_id;
  std::string state;  // "FINISHED", "FAILED", ...
  std::string model;
  std::string optimizer;
  bool has_model = false;  // "model" is present (the plot's title names it then)
  double elapsed_s = -1;
  double test_acc = -1;
  double rounds = -1;
  double bytes_per_worker = -1;
};

// One summary.json; an error when `json` is not a JSON object.
absl::StatusOr<RunSummary> ParseRunSummary(const std::string& json);

// One line of rounds.jsonl; "step", "h", "lr" and "train_loss" must be numbers.
absl::StatusOr<v1::RoundRecord> ParseRoundLine(const std::string& line);
// One line of evals.jsonl; "step" and "test_acc" must be numbers.
absl::StatusOr<v1::EvalReport> ParseEvalLine(const std::string& line);

// Every non-empty line of a rounds.jsonl or evals.jsonl. NotFound when the file cannot be read;
// InvalidArgument naming the file, the line and the field ("DIR/evals.jsonl:3: \"step\" is
// missing (a number): ...") for a bad line.
absl::StatusOr<std::vector<v1::RoundRecord>> ReadRoundsJsonl(const std::string& path);
absl::StatusOr<std::vector<v1::EvalReport>> ReadEvalsJsonl(const std::string& path);

// The whole of the file at `path`; empty when it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);

}  // namespace qsr

#endif  // QSR_CLI_RUN_DIR_H_
