#include "worker/clear_gradients.h"

namespace qsr {

void ClearGradients(torch::optim::Optimizer& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    for (torch::Tensor& p : group.params()) p.mutable_grad().reset();
  }
}

}  // namespace qsr
