// The optimizer a recipe names, and the pieces of its state that a sync may average.
//
// SGD has coupled weight decay (as torch.optim.SGD), AdamW decoupled. With group_weight, biases
// and normalisation parameters (every parameter of dimension <= 1) get no weight decay, as the
// authors' group_weight does.
#ifndef QSR_WORKER_OPTIMIZER_FACTORY_H_
#define QSR_WORKER_OPTIMIZER_FACTORY_H_

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "common/recipe.h"

namespace qsr {

// REQUIRES: `recipe` resolved; the model is on its training device.
std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const Recipe& recipe,
                                                       torch::nn::Module& model);

// Sets the learning rate of every parameter group.
void SetLearningRate(torch::optim::Optimizer& optimizer, double lr);

// AdamW's first (`m`) and/or second (`v`) moment tensors for `params`, in parameter order; empty
// before the first step (the state is created lazily) or for other optimizers. The tensors are
// the optimizer's own (updated in place), so averaging them averages the state.
std::vector<torch::Tensor> AdamMoments(torch::optim::Optimizer& optimizer,
                                       const std::vector<torch::Tensor>& params, bool m, bool v);

}  // namespace qsr

#endif  // QSR_WORKER_OPTIMIZER_FACTORY_H_
