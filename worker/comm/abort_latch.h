// AbortLatch: a communicator's "aborted, and why": set once, the first reason sticks.
//
// Both communicators (Gloo and NCCL) keep one; what an abort then does to the transport (close
// Gloo's sockets, ncclCommAbort) stays with each of them.
//
// Thread-safety: every member may be called from any thread at any time. is_set() is a lock-free
// read, so collectives can poll it while waiting.
#ifndef QSR_WORKER_COMM_ABORT_LATCH_H_
#define QSR_WORKER_COMM_ABORT_LATCH_H_

#include <atomic>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"

namespace qsr {

class AbortLatch {
 public:
  // Records `reason` ("aborted" when empty) unless a reason is set. Returns whether this call set
  // it (false: an earlier one did, and its reason stays).
  bool Set(const std::string& reason);
  bool is_set() const { return set_.load(); }
  // The first reason, or "" while not set.
  std::string reason() const;
  // FAILED_PRECONDITION "<backend> communicator (rank R of N) was aborted: <reason>".
  absl::Status AbortedStatus(const char* backend, int rank, int size) const;

 private:
  std::atomic<bool> set_{false};
  mutable std::mutex mu_;
  std::string reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_ABORT_LATCH_H_
