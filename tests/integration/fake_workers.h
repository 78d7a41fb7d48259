// FakeWorkers: workers that speak the coordinator protocol over gRPC without training, so that
// operator tools can be tested against real runs in seconds and without LibTorch.
//
// Each worker runs on its own thread: it joins, asks for rounds at the barrier, reports every
// round with a synthetic loss (rank 0 also reports an evaluation where the plan asks for one),
// waits `pace` per batch of rounds, and leaves cleanly when the coordinator answers RUN_FINISHED.
// Everything is bounded by `timeout`.
#ifndef QSR_TESTS_INTEGRATION_FAKE_WORKERS_H_
#define QSR_TESTS_INTEGRATION_FAKE_WORKERS_H_

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/connection_security.h"

namespace qsr::testing {

class FakeWorkers {
 public:
  struct Options {
    int workers = 2;
    absl::Duration pace = absl::ZeroDuration();  // sleep after each batch of rounds
    absl::Duration timeout = absl::Seconds(60);
    // TLS and token for every call (default: plain, no token).
    ClientSecurity security;
    // Worker ids are this prefix and the index (distinct prefixes for several groups in a run).
    std::string id_prefix = "fake-";
  };
  FakeWorkers(std::string address, Options options);
  ~FakeWorkers();  // joins the threads (they end by `timeout`)

  // Waits for every worker to end; returns the first error (OK when all left cleanly).
  absl::Status Wait();
  // Rounds trained so far by the worker started `index`-th.
  int64_t rounds(int index) const;

 private:
  absl::Status Run(int index);

  const std::string address_;
  const Options options_;
  mutable absl::Mutex mu_;
  std::vector<absl::Status> results_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> rounds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace qsr::testing

#endif  // QSR_TESTS_INTEGRATION_FAKE_WORKERS_H_
