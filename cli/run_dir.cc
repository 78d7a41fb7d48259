#include "cli/run_dir.h"

#include <fstream>
#include <initializer_list>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace qsr {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

absl::StatusOr<Struct> ParseObject(const std::string& json) {
  Struct object;
  auto parsed = google::protobuf::util::JsonStringToMessage(json, &object);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a JSON object: ", std::string(parsed.message())));
  }
  return object;
}

// `line` into M, after checking that every one of `required` is a number in it (protobuf's
// parser would take a missing field, or null, as 0).
template <typename M>
absl::StatusOr<M> ParseRecord(const std::string& line,
                              std::initializer_list<const char*> required) {
  absl::StatusOr<Struct> object = ParseObject(line);
  if (!object.ok()) return object.status();
  for (const char* key : required) {
    auto it = object->fields().find(key);
    if (it == object->fields().end() || it->second.kind_case() != Value::kNumberValue) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is not a number in it"));
    }
  }
  M record;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // "generation", "elapsed_s": the run log's own fields
  auto parsed = google::protobuf::util::JsonStringToMessage(line, &record, options);
  if (!parsed.ok()) return absl::InvalidArgumentError(std::string(parsed.message()));
  return record;
}

template <typename M>
absl::StatusOr<std::vector<M>> ReadJsonl(const std::string& path,
                                         absl::StatusOr<M> (*parse)(const std::string&)) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<M> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    absl::StatusOr<M> record = parse(line);
    if (!record.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", n, ": not a record this version understands (",
                       record.status().message(), "): ", line.substr(0, 120)));
    }
    out.push_back(*std::move(record));
  }
  return out;
}

std::string StringField(const Struct& object, const char* key) {
  auto it = object.fields().find(key);
  return it != object.fields().end() && it->second.kind_case() == Value::kStringValue
             ? it->second.string_value()
             : "";
}

double NumberField(const Struct& object, const char* key) {
  auto it = object.fields().find(key);
  return it != object.fields().end() && it->second.kind_case() == Value::kNumberValue
             ? it->second.number_value()
             : -1;
}

}  // namespace

absl::StatusOr<RunSummary> ParseRunSummary(const std::string& json) {
  absl::StatusOr<Struct> object = ParseObject(json);
  if (!object.ok()) return object.status();
  RunSummary s;
  s.run_id = StringField(*object, "run_id");
  s.state = StringField(*object, "state");
  s.model = StringField(*object, "model");
  s.has_model = object->fields().count("model") > 0;
  s.optimizer = StringField(*object, "optimizer");
  s.elapsed_s = NumberField(*object, "elapsed_s");
  s.test_acc = NumberField(*object, "test_acc");
  s.rounds = NumberField(*object, "rounds");
  s.bytes_per_worker = NumberField(*object, "bytes_per_worker");
  return s;
}

absl::StatusOr<v1::RoundRecord> ParseRoundLine(const std::string& line) {
  return ParseRecord<v1::RoundRecord>(line, {"step", "h", "lr", "train_loss"});
}

absl::StatusOr<v1::EvalReport> ParseEvalLine(const std::string& line) {
  return ParseRecord<v1::EvalReport>(line, {"step", "test_acc"});
}

absl::StatusOr<std::vector<v1::RoundRecord>> ReadRoundsJsonl(const std::string& path) {
  return ReadJsonl<v1::RoundRecord>(path, &ParseRoundLine);
}

absl::StatusOr<std::vector<v1::EvalReport>> ReadEvalsJsonl(const std::string& path) {
  return ReadJsonl<v1::EvalReport>(path, &ParseEvalLine);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace qsr
