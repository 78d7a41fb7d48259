// Mixed precision for the training step (recipe key `precision`).
//
// `fp32` trains in float32. `bf16` runs forward and loss under LibTorch's autocast with bfloat16
// as the lower precision: matrix multiplies and convolutions compute in bfloat16, while
// parameters, gradients, optimizer state and the averaging buffers stay float32 (autocast casts
// copies of the weights per op; their gradients come back as float32). It needs a CUDA GPU with
// native bfloat16 (compute capability 8.0 or newer), or the CPU. `fp16` parses in a recipe but is
// refused on every device: its loss scaler (worker/loss_scaler.h) exists, the fp16 autocast step
// that would drive it is not wired into the trainer, and the CPU would not support it anyway.
//
// The autocast state is thread-local; AutocastScope affects only the calling thread.
#ifndef QSR_WORKER_PRECISION_H_
#define QSR_WORKER_PRECISION_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"

namespace qsr {

// OK if `precision` can train on `device`; INVALID_ARGUMENT naming the key, the allowed values
// and devices otherwise (an unknown value, fp16, or bf16 on a GPU without native bfloat16).
absl::Status CheckPrecision(const std::string& precision, const torch::Device& device);

// While alive (and `enabled`), ops on `device`'s type run under bfloat16 autocast. Restores the
// previous autocast state, and clears autocast's weight-cast cache when the outermost scope
// ends (as Python's torch.autocast does). Not copyable; create and destroy on one thread.
class AutocastScope {
 public:
  AutocastScope(bool enabled, torch::DeviceType device_type);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  const bool enabled_;
  const torch::DeviceType device_type_;
  bool previous_enabled_ = false;
  torch::ScalarType previous_dtype_ = torch::kFloat32;
};

}  // namespace qsr

#endif  // QSR_WORKER_PRECISION_H_
