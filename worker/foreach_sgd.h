// SGD with momentum, weight decay and Nesterov: torch::optim::SGD's arithmetic with fewer passes
// over memory.
//
// Same state and serialisation as torch::optim::SGD (it is one: the state is SGDParamState, so
// checkpoints, snapshots and averaging of the momentum buffers are unchanged), and the same
// arithmetic up to rounding in the last bit (the order of operations is LibTorch's; LibTorch's
// vectorised kernels may fuse a multiply and an add where this one does not).
// - CPU float32 parameters whose gradient and buffer share their layout take one fused pass per
//   parameter (read p, g, buffer; write p, buffer) instead of LibTorch's four, which allocate a
//   temporary and touch each array about twice as often. A small model's update is bound by
//   memory: for the mlp at batch 128 LibTorch's update was ~20% of a training step.
// - Everything else (GPU tensors, other dtypes or layouts) is updated with a few multi-tensor
//   ("foreach") kernels per group instead of several kernels per parameter. On a GPU,
//   LibTorch's SGD launches about four kernels per parameter per step; for a ResNet-18 (62
//   tensors) that launch overhead was 3-4% of a step at batch 256 on an H100, where
//   torch.optim.SGD (foreach by default on CUDA) did not pay it.
//
// Thread-compatible, as torch::optim::SGD. The fused pass uses the intra-op thread pool.
#ifndef QSR_WORKER_FOREACH_SGD_H_
#define QSR_WORKER_FOREACH_SGD_H_

#include <torch/torch.h>

namespace qsr {

class ForeachSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;

  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace qsr

#endif  // QSR_WORKER_FOREACH_SGD_H_
