// KvStore: the coordinator's side of the rendezvous that bootstraps the workers' collectives.
//
// Set stores bytes under a key; Get waits (asynchronously) until all of its keys exist or its
// deadline passes, then calls its callback exactly once. Waiting never blocks a gRPC thread: the
// callback is kept and run by the Set that completes it, or by ExpireWaiters once the deadline has
// passed. Every input is bounded (key length, value size, keys per request, total bytes) so that a
// confused or hostile client cannot exhaust the coordinator.
//
// Thread-safe. Callbacks run outside the internal lock, on the thread of the Set or
// ExpireWaiters call that resolved them.
#ifndef QSR_COORDINATOR_KV_STORE_H_
#define QSR_COORDINATOR_KV_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace qsr {

class KvStore {
 public:
  struct Limits {
    size_t max_key_bytes = 512;  // keys are also printable ASCII (0x20-0x7e)
    size_t max_value_bytes = 4 << 20;
    size_t max_keys_per_get = 1024;
    size_t max_total_bytes = size_t{256} << 20;  // keys and values of the whole store
    size_t max_waiters = 65536;
  };
  using GetCallback = std::function<void(absl::StatusOr<std::vector<std::string>>)>;

  KvStore() : KvStore(Limits()) {}
  explicit KvStore(Limits limits) : limits_(limits) {}

  // INVALID_ARGUMENT for an empty, oversized or non-printable key or an oversized value;
  // RESOURCE_EXHAUSTED when the store is full. Messages name the field and the limit.
  absl::Status Set(const std::string& key, std::string value);

  // Validates the request (INVALID_ARGUMENT, returned, `done` not called); otherwise `done` is
  // called exactly once, maybe before Get returns, with the values or DEADLINE_EXCEEDED naming
  // the missing keys.
  absl::Status Get(std::vector<std::string> keys, absl::Time deadline, GetCallback done);

  // Resolves every waiter whose deadline is at or before `now` with DEADLINE_EXCEEDED.
  void ExpireWaiters(absl::Time now);

  // Removes every key that starts with `prefix` (a generation that ended).
  void ErasePrefix(const std::string& prefix);

  size_t total_bytes() const;

 private:
  struct Waiter {
    std::vector<std::string> keys;
    absl::Time deadline;
    GetCallback done;
  };
  bool HasAll(const Waiter& w) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::string> ValuesOf(const Waiter& w) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Limits limits_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> data_ ABSL_GUARDED_BY(mu_);
  size_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_waiter_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_KV_STORE_H_
