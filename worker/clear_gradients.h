// Clearing gradients between steps by dropping them (set to none) rather than zeroing them.
#ifndef QSR_WORKER_CLEAR_GRADIENTS_H_
#define QSR_WORKER_CLEAR_GRADIENTS_H_

#include <torch/torch.h>

namespace qsr {

// Drops the gradient of every parameter `optimizer` updates: LibTorch 2.x's zero_grad()
// default (set_to_none), where 1.13's zero_grad() fills zeros. The next backward pass then hands
// each parameter the gradient it computed instead of adding it to a zeroed one: no fill and no
// add, about a tenth of an mlp step on the CPU. A parameter that gets no gradient in a step is
// left alone by the optimizers (no weight decay, no momentum), as in PyTorch 2.x; every worker
// path (gradient bucketing, gradient averaging) treats a missing gradient as "none this step".
//
// Not thread-safe with a backward pass or optimizer step on the same parameters.
void ClearGradients(torch::optim::Optimizer& optimizer);

}  // namespace qsr

#endif  // QSR_WORKER_CLEAR_GRADIENTS_H_
