// A small builder for one-line JSON objects (JSON lines logs, --json output).
//
// Keys keep insertion order. Non-finite doubles are written as null. Thread-compatible.
#ifndef QSR_COMMON_JSON_WRITER_H_
#define QSR_COMMON_JSON_WRITER_H_

#include <cstdint>
#include <string>

namespace qsr {

class JsonObject {
 public:
  JsonObject& Add(const std::string& key, const std::string& value);
  JsonObject& Add(const std::string& key, const char* value);
  JsonObject& Add(const std::string& key, int64_t value);
  JsonObject& Add(const std::string& key, int value) {
    return Add(key, static_cast<int64_t>(value));
  }
  JsonObject& Add(const std::string& key, double value);
  JsonObject& Add(const std::string& key, bool value);
  // `json` must already be valid JSON (an object or array built elsewhere).
  JsonObject& AddRaw(const std::string& key, const std::string& json);

  // The object, e.g. {"round":3,"lr":0.1}.
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void Key(const std::string& key);
  std::string body_;
};

// `s` as a quoted JSON string.
std::string JsonQuote(const std::string& s);

}  // namespace qsr

#endif  // QSR_COMMON_JSON_WRITER_H_
