#include "rendezvous/store.h"

#include <condition_variable>
#include <map>
#include <mutex>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

namespace qsr {

absl::Status Store::Wait(const std::vector<std::string>& keys, absl::Time deadline) {
  return Get(keys, deadline).status();
}

absl::Status PrefixStore::Set(const std::string& key, const std::string& value) {
  return base_->Set(Scoped(key), value);
}

absl::StatusOr<std::vector<std::string>> PrefixStore::Get(const std::vector<std::string>& keys,
                                                          absl::Time deadline) {
  std::vector<std::string> scoped;
  scoped.reserve(keys.size());
  for (const auto& k : keys) scoped.push_back(Scoped(k));
  return base_->Get(scoped, deadline);
}

struct InMemoryStore::State {
  absl::Mutex mu;
  std::map<std::string, std::string> data ABSL_GUARDED_BY(mu);
};

InMemoryStore::InMemoryStore() : state_(std::make_unique<State>()) {}
InMemoryStore::~InMemoryStore() = default;

absl::Status InMemoryStore::Set(const std::string& key, const std::string& value) {
  absl::MutexLock lock(&state_->mu);
  state_->data[key] = value;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> InMemoryStore::Get(const std::vector<std::string>& keys,
                                                            absl::Time deadline) {
  State& s = *state_;
  auto all_present = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
    for (const auto& k : keys) {
      if (s.data.count(k) == 0) return false;
    }
    return true;
  };
  absl::MutexLock lock(&s.mu);
  if (!s.mu.AwaitWithDeadline(absl::Condition(&all_present), deadline)) {
    std::vector<std::string> missing;
    for (const auto& k : keys) {
      if (s.data.count(k) == 0) missing.push_back(k);
    }
    return absl::DeadlineExceededError("store: timed out waiting for keys: " +
                                       absl::StrJoin(missing, ", "));
  }
  std::vector<std::string> values;
  values.reserve(keys.size());
  for (const auto& k : keys) values.push_back(s.data[k]);
  return values;
}

}  // namespace qsr
