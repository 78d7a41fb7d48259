// GlooStore: adapts a qsr::Store (the coordinator's rendezvous, or an InMemoryStore in tests) to
// the gloo::rendezvous::Store interface that gloo::rendezvous::Context::connectFullMesh uses.
//
// Gloo's store API reports failures by exception, so every method here throws GlooStoreError (a
// gloo::IoException carrying the underlying absl::Status) instead of returning a status. Every
// blocking call is bounded: get() and wait(keys) use the default timeout given at construction,
// wait(keys, timeout) uses `timeout` (a zero or negative timeout, gloo's "no timeout", also means
// the default timeout: this adapter never blocks without a deadline). An optional overall
// deadline caps every wait, e.g. to bound a whole rendezvous that waits for peers one by one.
//
// Keys pass through unchanged; scope them with a PrefixStore before handing the store over.
// Thread-safe if the underlying store is. Does not own the underlying store.
#ifndef QSR_WORKER_COMM_GLOO_STORE_H_
#define QSR_WORKER_COMM_GLOO_STORE_H_

#include <gloo/common/error.h>
#include <gloo/rendezvous/store.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "rendezvous/store.h"

namespace qsr {

// The exception GlooStore throws; status() is the underlying store's error (DEADLINE_EXCEEDED
// naming the missing keys when a wait timed out).
class GlooStoreError : public gloo::IoException {
 public:
  explicit GlooStoreError(absl::Status status)
      : gloo::IoException(status.ToString()), status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

class GlooStore : public gloo::rendezvous::Store {
 public:
  // `store` must outlive this adapter. `default_timeout` must be positive.
  GlooStore(qsr::Store* store, absl::Duration default_timeout,
            absl::Time deadline = absl::InfiniteFuture());

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override;

 private:
  absl::Time DeadlineFor(std::chrono::milliseconds timeout) const;

  qsr::Store* const store_;
  const absl::Duration default_timeout_;
  const absl::Time deadline_;
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_GLOO_STORE_H_
