// The optimizer a recipe names (the pieces of its state that a sync may average: adam_moments.h).
//
// SGD has coupled weight decay (as torch.optim.SGD), AdamW decoupled. With group_weight, biases
// and normalisation parameters (every parameter of dimension <= 1) get no weight decay, as the
// authors' group_weight does.
#ifndef QSR_WORKER_OPTIMIZER_FACTORY_H_
#define QSR_WORKER_OPTIMIZER_FACTORY_H_

#include <torch/torch.h>

#include <memory>

#include "common/recipe.h"

namespace qsr {

// REQUIRES: `recipe` resolved; the model is on its training device.
std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const Recipe& recipe,
                                                       torch::nn::Module& model);

// Sets the learning rate of every parameter group.
void SetLearningRate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace qsr

#endif  // QSR_WORKER_OPTIMIZER_FACTORY_H_
