// SGD with momentum, weight decay and Nesterov, updating all parameters of a group with a few
// multi-tensor ("foreach") kernels instead of several kernels per parameter.
//
// Same arithmetic, state and serialisation as torch::optim::SGD (it is one: the state is
// SGDParamState, so checkpoints, snapshots and averaging of the momentum buffers are unchanged).
// Why: on a GPU LibTorch's SGD launches about four kernels per parameter per step; for a
// ResNet-18 (62 tensors) that launch overhead was 3-4% of a step at batch 256 on an H100, where
// torch.optim.SGD (foreach by default on CUDA) did not pay it. On the CPU the foreach kernels
// fall back to per-tensor loops, so it costs nothing there.
//
// Thread-compatible, as torch::optim::SGD.
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
