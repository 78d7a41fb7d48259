// AdamW's moment tensors, which a sync may average with the model (avg_m / avg_v).
//
// Pure access to a LibTorch optimizer's state; thread-compatible (the optimizer's own rules).
#ifndef QSR_WORKER_ADAM_MOMENTS_H_
#define QSR_WORKER_ADAM_MOMENTS_H_

#include <torch/torch.h>

#include <vector>

namespace qsr {

// AdamW's first (`m`) and/or second (`v`) moment tensors for `params`, in parameter order; empty
// before the first step (the state is created lazily) or for other optimizers. The tensors are
// the optimizer's own (updated in place), so averaging them averages the state.
std::vector<torch::Tensor> AdamMoments(torch::optim::Optimizer& optimizer,
                                       const std::vector<torch::Tensor>& params, bool m, bool v);

}  // namespace qsr

#endif  // QSR_WORKER_ADAM_MOMENTS_H_
