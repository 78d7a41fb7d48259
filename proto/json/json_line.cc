#include "proto/json/json_line.h"

#include <cmath>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace qsr {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::Struct;
using google::protobuf::Value;

// How protobuf prints a non-finite double: a JSON string.
const char* NonFiniteToken(double v) {
  if (std::isnan(v)) return "NaN";
  return v > 0 ? "Infinity" : "-Infinity";
}

// For each singular double or float field of `m` (and of the messages in it) that is not finite,
// the text protobuf prints for it, "\"name\":\"NaN\"", counted.
void CountNonFinite(const Message& m, std::map<std::string, int>* printed) {
  const Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(m, f); ++i) {
          CountNonFinite(r->GetRepeatedMessage(m, f, i), printed);
        }
      } else {
        CountNonFinite(r->GetMessage(m, f), printed);
      }
      continue;
    }
    if (f->is_repeated()) continue;
    double v = 0;
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
      v = r->GetDouble(m, f);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
      v = r->GetFloat(m, f);
    } else {
      continue;
    }
    if (!std::isfinite(v)) {
      ++(*printed)[absl::StrCat("\"", f->name(), "\":\"", NonFiniteToken(v), "\"")];
    }
  }
}

// Rewrites protobuf's "NaN"/"Infinity" strings as null. A JSON string's own quotes are escaped,
// so the printed `"name":"NaN"` is a key and its value; it is rewritten only when it occurs
// exactly as often as the non-finite fields named so (a string field of the same name holding
// "NaN" would make it ambiguous, and then protobuf's form stays, which it can read back).
void NullNonFinite(const Message& m, std::string* json) {
  std::map<std::string, int> printed;
  CountNonFinite(m, &printed);
  for (const auto& [text, count] : printed) {
    int found = 0;
    for (size_t at = json->find(text); at != std::string::npos; at = json->find(text, at + 1)) {
      ++found;
    }
    if (found != count) continue;
    const std::string null_text = text.substr(0, text.find(':') + 1) + "null";
    *json = absl::StrReplaceAll(*json, {{text, null_text}});
  }
}

std::string FieldNames(const Descriptor& d) {
  std::vector<std::string> names;
  for (int i = 0; i < d.field_count(); ++i) names.push_back(d.field(i)->name());
  return absl::StrJoin(names, ", ");
}

const char* KindName(const Value& v) {
  switch (v.kind_case()) {
    case Value::kNullValue:
      return "null";
    case Value::kStringValue:
      return "a string";
    case Value::kBoolValue:
      return "a boolean";
    case Value::kStructValue:
      return "an object";
    case Value::kListValue:
      return "a list";
    default:
      return "a number";
  }
}

// The checks protobuf's parser does not make: keys the message lacks (its error names neither the
// key's message nor what is allowed) and numbers that must be there.
absl::Status CheckKeys(const Struct& object, const JsonLineOptions& options, const Descriptor& d) {
  if (!options.ignore_unknown_fields) {
    for (const auto& [key, value] : object.fields()) {
      if (d.FindFieldByName(key) == nullptr && d.FindFieldByCamelcaseName(key) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("unknown field \"", key, "\" (",
                                                       d.full_name(), " has ", FieldNames(d), ")"));
      }
    }
  }
  for (const std::string& key : options.required_numbers) {
    auto it = object.fields().find(key);
    if (it == object.fields().end()) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is missing (a number)"));
    }
    if (it->second.kind_case() != Value::kNumberValue) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", key, "\" is ", KindName(it->second), ", not a number"));
    }
  }
  for (const std::string& key : options.required) {
    auto it = object.fields().find(key);
    if (it == object.fields().end() || it->second.kind_case() == Value::kNullValue) {
      return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" is missing"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string ToJsonLine(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;     // "total_steps", as the .proto names it
  options.always_print_primitive_fields = true;  // a 0 or a false is a value, not an absence
  std::string json;
  // Printing a message with no Any in it cannot fail.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  NullNonFinite(message, &json);
  return json;
}

absl::Status ParseJsonLineInto(absl::string_view line, const JsonLineOptions& options,
                               Message* out) {
  out->Clear();
  const google::protobuf::StringPiece input(line.data(), line.size());
  Struct object;
  if (auto parsed = google::protobuf::util::JsonStringToMessage(input, &object); !parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a JSON object: ", std::string(parsed.message())));
  }
  if (absl::Status s = CheckKeys(object, options, *out->GetDescriptor()); !s.ok()) return s;
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = options.ignore_unknown_fields;
  if (auto parsed = google::protobuf::util::JsonStringToMessage(input, out, parse); !parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a ", out->GetTypeName(), ": ", std::string(parsed.message())));
  }
  return absl::OkStatus();
}

absl::Status ForEachJsonLine(const std::string& path,
                             const std::function<absl::Status(absl::string_view line)>& each) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    if (absl::Status s = each(line); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", n, ": ", s.message(), ": ", line.substr(0, 120)));
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return absl::OkStatus();
}

}  // namespace qsr
