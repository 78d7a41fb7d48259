// Communicator: the collectives a worker needs to average models, over Gloo (CPU) or NCCL (GPU).
//
// One communicator belongs to one membership generation; it is created through a Store under a
// generation- and sequence-scoped prefix, and never reused after a failure. A failed or timed-out
// collective aborts the communicator: later calls fail fast with FAILED_PRECONDITION naming the
// reason. Abort() is idempotent.
//
// Thread-compatible: one thread issues collectives; Abort() may be called from any thread.
#ifndef QSR_WORKER_COMM_COMMUNICATOR_H_
#define QSR_WORKER_COMM_COMMUNICATOR_H_

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "absl/status/status.h"

namespace qsr {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "gloo" or "nccl"

  // Sums a contiguous float32 tensor across ranks, in place. Every rank ends with bit-identical
  // values.
  virtual absl::Status AllReduceSum(torch::Tensor& tensor) = 0;
  // Copies `root`'s tensor to every rank, in place.
  virtual absl::Status Broadcast(torch::Tensor& tensor, int root) = 0;

  virtual void Abort(const std::string& reason) = 0;
  virtual bool aborted() const = 0;

  // Payload bytes this rank has sent so far (by the algorithm's traffic: a ring all-reduce of N
  // bytes sends 2(n-1)/n * N).
  virtual int64_t bytes_sent() const = 0;
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_COMMUNICATOR_H_
