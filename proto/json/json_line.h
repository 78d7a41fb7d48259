// One JSON object per line, to and from protobuf messages: the only JSON path in qsr (run logs,
// summary.json, checkpoint manifests, the tools' --json output).
//
// Written with protobuf's json_util, compact (no whitespace), with the .proto's field names
// (snake_case) and every field printed, zeros and empty lists included (a proto3 `optional`
// field only when set). Protobuf prints 64-bit integers as strings, so records meant for scripts
// use int32 or double (see proto/qsr/v1/run_log.proto).
//
// Non-finite numbers: JSON has no NaN or infinity; protobuf writes them as the strings "NaN",
// "Infinity" and "-Infinity". ToJsonLine writes null instead for singular double and float
// fields, as qsr always has, so that Python's json, jq and sed read a number field without a
// value. (Only where a string field of the same name in the same message tree holds that very
// text would the rewrite be ambiguous; protobuf's strings then stay, which it reads back.)
// Reading null back leaves the field unset (0, or absent for an `optional` field); a reader that
// needs the value lists the field in JsonLineOptions::required_numbers and gets an error naming
// it.
//
// Pure functions (ReadJsonLines reads a file); thread-safe.
#ifndef QSR_PROTO_JSON_JSON_LINE_H_
#define QSR_PROTO_JSON_JSON_LINE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace qsr {

struct JsonLineOptions {
  // Accept (and drop) keys the message does not have: for files a newer qsr may have written.
  // Otherwise an unknown key is an error that names it and the keys the message has.
  bool ignore_unknown_fields = false;
  // Top-level keys that must be present with a number value (not null, not a string): protobuf
  // would read a missing field, or null, as 0.
  std::vector<std::string> required_numbers;
  // Top-level keys that must be present and not null, of whatever type the message gives them.
  std::vector<std::string> required;
};

// `message` as one line of compact JSON, without a newline.
std::string ToJsonLine(const google::protobuf::Message& message);

// Parses one JSON object into `out` (cleared first). InvalidArgument naming the problem: not a
// JSON object, an unknown key, a required number missing, a value of the wrong type.
absl::Status ParseJsonLineInto(absl::string_view line, const JsonLineOptions& options,
                               google::protobuf::Message* out);

template <typename M>
absl::StatusOr<M> ParseJsonLine(absl::string_view line, const JsonLineOptions& options = {}) {
  M message;
  if (absl::Status s = ParseJsonLineInto(line, options, &message); !s.ok()) return s;
  return message;
}

// Calls `each` with every non-empty line of the file at `path` and its 1-based number, stopping
// at the first error. NotFound when the file cannot be opened; an error from `each` comes back
// as InvalidArgument "PATH:N: <error>: <the line's start>".
absl::Status ForEachJsonLine(const std::string& path,
                             const std::function<absl::Status(absl::string_view line)>& each);

// Every non-empty line of the file at `path`, parsed as M (see ForEachJsonLine for errors).
template <typename M>
absl::StatusOr<std::vector<M>> ReadJsonLines(const std::string& path,
                                             const JsonLineOptions& options = {}) {
  std::vector<M> out;
  absl::Status s = ForEachJsonLine(path, [&](absl::string_view line) {
    absl::StatusOr<M> m = ParseJsonLine<M>(line, options);
    if (!m.ok()) return m.status();
    out.push_back(*std::move(m));
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace qsr

#endif  // QSR_PROTO_JSON_JSON_LINE_H_
