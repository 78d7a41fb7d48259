// ModelAverager: averages a model's floating-point state across ranks through one persistent flat
// float32 buffer (one collective per call instead of one per tensor).
//
// The tracked tensors are a model's parameters and floating buffers (e.g. BatchNorm running_mean
// and running_var); non-floating tensors (e.g. num_batches_tracked) and undefined tensors are
// skipped. All tracked tensors must live on one device; the flat buffer lives there too (CPU for
// Gloo, CUDA for NCCL). float64/float16/bfloat16 tensors are exchanged as float32, so after any
// call every rank holds the same float32-rounded values.
//
// Every rank must build its averager from the same architecture (same tensors in the same order),
// so that the flat layouts match; calls must match across ranks like the collectives they issue.
//
// Errors are the communicator's; on error the tracked tensors (and grads) are left unchanged.
//
// Thread-compatible. The tensors are referenced, not copied: the averager must not outlive the
// model, must be rebuilt if the model's tensors are replaced (e.g. by Module::to), and its
// methods must not run concurrently with training steps on the same tensors.
#ifndef QSR_WORKER_COMM_MODEL_AVERAGER_H_
#define QSR_WORKER_COMM_MODEL_AVERAGER_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace qsr {

class ModelAverager {
 public:
  // Tracks the floating tensors among `tensors`, in order. INVALID_ARGUMENT if they span more
  // than one device.
  static absl::StatusOr<ModelAverager> Create(const std::vector<torch::Tensor>& tensors);
  // Tracks module.parameters() then module.buffers() (recursively), skipping non-floating ones.
  static absl::StatusOr<ModelAverager> ForModule(const torch::nn::Module& module);

  ModelAverager(ModelAverager&&) = default;
  ModelAverager& operator=(ModelAverager&&) = default;

  // Replaces every tracked tensor by its mean across ranks: copy into the flat buffer,
  // AllReduceSum, divide by comm.size(), copy back. All ranks end bit-identical.
  absl::Status Average(Communicator& comm);
  // Replaces the .grad() of every tracked tensor that requires grad by the mean gradient across
  // ranks (data-parallel training; one all-reduce). An undefined grad counts as zeros; it is then
  // set to the mean if any rank had a gradient for that tensor, and left undefined if none had,
  // so the set of parameters with gradients ends identical on every rank.
  absl::Status AllReduceGradients(Communicator& comm);
  // Overwrites every tracked tensor with `root`'s values (initial model).
  absl::Status BroadcastFrom(Communicator& comm, int root);

  // Bytes that Average() and BroadcastFrom() exchange: 4 per tracked element (the flat buffer
  // has num_grad_tensors() floats of slack on top, for AllReduceGradients' has-grad flags).
  int64_t bytes() const { return numel_ * 4; }
  // Number of tracked tensors, and how many of them require grad.
  int64_t num_tensors() const { return static_cast<int64_t>(entries_.size()); }
  int64_t num_grad_tensors() const { return num_grad_tensors_; }

 private:
  struct Entry {
    torch::Tensor tensor;
    int64_t offset;       // Into the flat buffer, for Average and BroadcastFrom.
    int64_t grad_offset;  // Into the flat buffer, for AllReduceGradients; -1 if no grad.
  };

  ModelAverager(std::vector<Entry> entries, torch::Tensor flat, int64_t numel,
                int64_t num_grad_tensors, int64_t grad_numel);

  torch::Tensor Slot(int64_t offset, const torch::Tensor& like) const;

  std::vector<Entry> entries_;
  torch::Tensor flat_;  // float32, 1-D, persistent: max(numel_, grad_numel_ + num_grad_tensors_).
  int64_t numel_ = 0;   // Tracked elements; Average uses flat_[0, numel_).
  int64_t num_grad_tensors_ = 0;
  // AllReduceGradients uses flat_[0, grad_numel_) for gradients, then one has-grad flag per
  // tensor that requires grad.
  int64_t grad_numel_ = 0;
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_MODEL_AVERAGER_H_
