#include "coordinator/kv_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace qsr {
namespace {

absl::Status CheckKey(const std::string& key, size_t max_bytes) {
  if (key.empty()) return absl::InvalidArgumentError("rendezvous key is empty");
  if (key.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous key is ", key.size(), " bytes; at most ", max_bytes, " allowed"));
  }
  for (size_t i = 0; i < key.size(); ++i) {
    // Keys end up in log lines and timeout messages: printable ASCII only.
    const unsigned char c = static_cast<unsigned char>(key[i]);
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat("rendezvous key has byte 0x", absl::Hex(c),
                                                     " at offset ", i,
                                                     "; allowed: printable ASCII (0x20-0x7e)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status KvStore::Set(const std::string& key, std::string value) {
  if (absl::Status s = CheckKey(key, limits_.max_key_bytes); !s.ok()) return s;
  if (value.size() > limits_.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous value for key \"", key, "\" is ",
                                                   value.size(), " bytes; at most ",
                                                   limits_.max_value_bytes, " allowed"));
  }
  std::vector<std::pair<GetCallback, std::vector<std::string>>> ready;
  {
    absl::MutexLock lock(&mu_);
    auto it = data_.find(key);
    size_t old_bytes = it == data_.end() ? 0 : key.size() + it->second.size();
    size_t new_total = total_bytes_ - old_bytes + key.size() + value.size();
    if (new_total > limits_.max_total_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("rendezvous store is full (", total_bytes_,
                                                       " of ", limits_.max_total_bytes, " bytes)"));
    }
    total_bytes_ = new_total;
    data_[key] = std::move(value);
    for (auto w = waiters_.begin(); w != waiters_.end();) {
      if (HasAll(w->second)) {
        ready.emplace_back(std::move(w->second.done), ValuesOf(w->second));
        w = waiters_.erase(w);
      } else {
        ++w;
      }
    }
  }
  for (auto& [done, values] : ready) done(std::move(values));
  return absl::OkStatus();
}

absl::Status KvStore::Get(std::vector<std::string> keys, absl::Time deadline, GetCallback done) {
  if (keys.empty()) return absl::InvalidArgumentError("rendezvous get names no keys");
  if (keys.size() > limits_.max_keys_per_get) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous get names ", keys.size(),
                                                   " keys; at most ", limits_.max_keys_per_get,
                                                   " allowed"));
  }
  for (const auto& k : keys) {
    if (absl::Status s = CheckKey(k, limits_.max_key_bytes); !s.ok()) return s;
  }
  Waiter w{std::move(keys), deadline, std::move(done)};
  std::vector<std::string> values;
  {
    absl::MutexLock lock(&mu_);
    if (!HasAll(w)) {
      if (waiters_.size() >= limits_.max_waiters) {
        return absl::ResourceExhaustedError("too many rendezvous waiters");
      }
      waiters_.emplace(next_waiter_id_++, std::move(w));
      return absl::OkStatus();
    }
    values = ValuesOf(w);
  }
  w.done(std::move(values));
  return absl::OkStatus();
}

void KvStore::ExpireWaiters(absl::Time now) {
  std::vector<std::pair<GetCallback, std::string>> expired;
  {
    absl::MutexLock lock(&mu_);
    for (auto w = waiters_.begin(); w != waiters_.end();) {
      if (w->second.deadline <= now) {
        std::vector<std::string> missing;
        for (const auto& k : w->second.keys) {
          if (data_.count(k) == 0) missing.push_back(k);
        }
        expired.emplace_back(std::move(w->second.done), absl::StrJoin(missing, ", "));
        w = waiters_.erase(w);
      } else {
        ++w;
      }
    }
  }
  for (auto& [done, missing] : expired) {
    done(absl::DeadlineExceededError("timed out waiting for rendezvous keys: " + missing));
  }
}

void KvStore::ErasePrefix(const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  for (auto it = data_.lower_bound(prefix);
       it != data_.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
    total_bytes_ -= it->first.size() + it->second.size();
    it = data_.erase(it);
  }
}

size_t KvStore::total_bytes() const {
  absl::MutexLock lock(&mu_);
  return total_bytes_;
}

bool KvStore::HasAll(const Waiter& w) const {
  for (const auto& k : w.keys) {
    if (data_.count(k) == 0) return false;
  }
  return true;
}

std::vector<std::string> KvStore::ValuesOf(const Waiter& w) const {
  std::vector<std::string> values;
  values.reserve(w.keys.size());
  for (const auto& k : w.keys) values.push_back(data_.at(k));
  return values;
}

}  // namespace qsr
