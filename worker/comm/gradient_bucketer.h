// GradientBucketer: data-parallel gradient averaging that overlaps with the backward pass, as
// PyTorch's DistributedDataParallel does.
//
// The parameters that require grad are split, in reverse registration order (roughly the order in
// which backward produces their gradients), into buckets of about `bucket_bytes` of float32 each
// (a parameter larger than that gets a bucket of its own). A hook on every parameter copies its
// gradient into its bucket as backward produces it; when a bucket is complete it is all-reduced
// with Communicator::StartAllReduceSum (Gloo: the communicator's thread; NCCL: its stream) while
// backward goes on. Buckets are started strictly in bucket order, so that every rank issues the
// same collectives in the same order whatever order its hooks fire in.
//
// Per step:
//   ClearGradients(optimizer);   // or optimizer.zero_grad()
//   for each micro-batch: { if (last) bucketer.Arm(); loss.backward(); }
//   bucketer.Finish();   // every .grad now holds the mean over ranks
//   optimizer.step();
// Only the armed backward (the last micro-batch) communicates: earlier micro-batches just
// accumulate into .grad, and the armed hooks add the accumulated .grad to the incoming gradient.
//
// The result is what ModelAverager::AllReduceGradients gives after backward: the mean gradient,
// with an undefined gradient counting as zeros; a parameter without a gradient on every rank keeps
// an undefined .grad, one with a gradient on some rank gets the mean. (A parameter that got no
// gradient delays its bucket, and the buckets after it, to Finish().) Each bucket carries one
// has-gradient flag per parameter for that. With 1 or 2 ranks the values are bit-identical to
// AllReduceGradients'; with more, Gloo's ring sums each element in an order that depends on its
// position in the buffer, so they agree within float32 rounding (and are bit-identical across
// ranks).
//
// Errors: a failed collective aborts the communicator (the communicator's contract) and Finish()
// returns the first error; a hook never throws, it records the error instead.
//
// Thread-safety and lifecycle: Arm() and Finish() come from the training thread; hooks run on the
// autograd engine's thread for the device (the training thread on the CPU); an internal mutex
// orders them. The bucketer references the parameters and the communicator: it must not outlive
// either, must be rebuilt if the parameters are replaced (Module::to), and its destructor removes
// the hooks and waits (bounded by the communicator's timeout) for collectives still in flight.
// All parameters must be floating tensors on one device.
#ifndef QSR_WORKER_COMM_GRADIENT_BUCKETER_H_
#define QSR_WORKER_COMM_GRADIENT_BUCKETER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace qsr {

struct BucketerOptions {
  // Target bucket payload in bytes (float32 gradients). Must be positive.
  int64_t bucket_bytes = 25LL << 20;
};

class GradientBucketer {
 public:
  // Buckets the parameters among `params` that require grad. INVALID_ARGUMENT for a null
  // communicator, a non-positive bucket size, undefined or non-floating parameters, or
  // parameters on more than one device.
  static absl::StatusOr<std::unique_ptr<GradientBucketer>> Create(
      const std::vector<torch::Tensor>& params, Communicator* comm, const BucketerOptions& options);

  ~GradientBucketer();
  GradientBucketer(const GradientBucketer&) = delete;
  GradientBucketer& operator=(const GradientBucketer&) = delete;

  // Makes the hooks of the next backward pass collect and send gradients. Idempotent.
  void Arm();
  // After the armed backward: sends the buckets still unsent (their parameters' gradients taken
  // from .grad, or zeros), waits for every bucket, and writes the mean gradients into .grad.
  // Disarms. Returns the first error of the step (FAILED_PRECONDITION if not armed).
  absl::Status Finish();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Parameters per bucket, in bucket order, as positions among the parameters that require grad
  // counted from the last one (the order buckets fill in).
  std::vector<std::vector<int>> bucket_layout() const;

 private:
  struct Param {
    torch::Tensor tensor;
    int bucket;
    int64_t offset;  // of its gradient in the bucket's buffer
    int slot;        // its index within the bucket (for the flag)
    unsigned hook = 0;
  };
  struct Bucket {
    std::vector<int> params;
    int64_t numel = 0;     // gradient elements; the flags follow
    torch::Tensor buffer;  // float32, numel + params.size()
    int pending = 0;       // parameters whose gradient has not arrived yet
    bool started = false;
    std::unique_ptr<PendingCollective> collective;
  };

  GradientBucketer(Communicator* comm, std::vector<Param> params, std::vector<Bucket> buckets);

  void OnGradient(int index, const torch::Tensor& grad);
  // Starts the complete buckets that are next in order.
  void StartReadyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills the unsent parameters' slots from .grad (or zeros) and starts every unsent bucket.
  void StartRestLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for every started bucket; returns the first error.
  absl::Status WaitAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordError(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Communicator* const comm_;
  mutable std::mutex mu_;
  std::vector<Param> params_;
  std::vector<Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> arrived_ ABSL_GUARDED_BY(mu_);  // per parameter, this step
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  int next_start_ ABSL_GUARDED_BY(mu_) = 0;  // first bucket not started yet
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_GRADIENT_BUCKETER_H_
