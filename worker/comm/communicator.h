// Communicator: the collectives a worker needs to average models, over Gloo (CPU) or NCCL (GPU).
//
// One communicator belongs to one membership generation; it is created through a Store under a
// generation- and sequence-scoped prefix, and never reused after a failure. A failed or timed-out
// collective aborts the communicator: later calls fail fast with FAILED_PRECONDITION naming the
// reason. Abort() is idempotent.
//
// Thread-compatible: one thread issues collectives; Abort() may be called from any thread.
//
// Asynchronous all-reduce. StartAllReduceSum() returns at once with a PendingCollective; the
// collective runs on the communicator's own thread (Gloo) or stream (NCCL), ordered after the
// work already queued on the caller's compute stream, so that backward can go on while gradients
// travel. Started collectives run in start order. While any is pending the caller must not issue
// a synchronous collective (ranks could then issue them in different orders), and must not touch
// the started tensor until its Wait() returned. StartAllReduceSum() may be called from a thread
// other than the one that calls the synchronous collectives (autograd hooks run on the autograd
// engine's threads), but not concurrently with them.
#ifndef QSR_WORKER_COMM_COMMUNICATOR_H_
#define QSR_WORKER_COMM_COMMUNICATOR_H_

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace qsr {

// A collective started by Communicator::StartAllReduceSum. Must not outlive its communicator;
// destroying it without Wait() is allowed (the collective still completes or fails).
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Blocks until the collective has completed on this rank and returns its status; bounded by
  // the communicator's timeout (a collective that overruns it aborts the communicator and
  // returns DEADLINE_EXCEEDED). Later calls return the same status at once.
  virtual absl::Status Wait() = 0;
};

// "tensor of dtype Float on cpu with 12 elements": how the communicators name a tensor they
// refuse, in their INVALID_ARGUMENT errors.
inline std::string DescribeTensor(const torch::Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  return absl::StrCat("tensor of dtype ", std::string(c10::toString(t.scalar_type())), " on ",
                      t.device().str(), t.is_contiguous() ? "" : " (non-contiguous)", " with ",
                      t.numel(), " elements");
}

class Communicator {
 public:
  virtual ~Communicator() = default;

  // Unique in the process and never reused, unlike the object's address: tells a communicator
  // from an earlier one (ModelAverager keeps state per communicator).
  uint64_t instance_id() const { return instance_id_; }

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "gloo" or "nccl"

  // Sums a contiguous float32 tensor across ranks, in place. Every rank ends with bit-identical
  // values.
  virtual absl::Status AllReduceSum(torch::Tensor& tensor) = 0;
  // Replaces a contiguous float32 or bfloat16 tensor by its mean across ranks, in place; every
  // rank ends with bit-identical values. Same failure contract as AllReduceSum. Implementations
  // fold the division into the collective where they can (Gloo's ring, NCCL's ncclAvg).
  virtual absl::Status AllReduceAverage(torch::Tensor& tensor) = 0;
  // Starts AllReduceSum(tensor) and returns without waiting for it (see the file comment); the
  // tensor may also be bfloat16 (Gloo; NCCL 2.20 and later), summed as AllReduceAverage sums it.
  // Errors known at once (an aborted communicator, a wrong tensor) are returned here; the
  // collective's own failure is returned by Wait() and aborts the communicator as AllReduceSum
  // would.
  virtual absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceSum(
      torch::Tensor tensor) = 0;
  // Copies `root`'s tensor to every rank, in place.
  virtual absl::Status Broadcast(torch::Tensor& tensor, int root) = 0;

  virtual void Abort(const std::string& reason) = 0;
  virtual bool aborted() const = 0;

  // Payload bytes this rank has sent so far (by the algorithm's traffic: a ring all-reduce of N
  // bytes sends 2(n-1)/n * N).
  virtual int64_t bytes_sent() const = 0;

 protected:
  Communicator() : instance_id_(NextInstanceId()) {}

 private:
  static uint64_t NextInstanceId() {
    static std::atomic<uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }

  const uint64_t instance_id_;
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_COMMUNICATOR_H_
