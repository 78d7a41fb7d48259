#include "worker/adam_moments.h"

#include <type_traits>

#include "worker/optimizer_state.h"

namespace qsr {

std::vector<torch::Tensor> AdamMoments(torch::optim::Optimizer& optimizer,
                                       const std::vector<torch::Tensor>& params, bool m, bool v) {
  std::vector<torch::Tensor> out;
  auto& state = optimizer.state();
  using Key = typename std::decay_t<decltype(state)>::key_type;
  for (const torch::Tensor& p : params) {
    auto it = state.find(OptimizerStateKey<Key>(p));
    if (it == state.end()) return {};
    auto* adam = dynamic_cast<torch::optim::AdamWParamState*>(it->second.get());
    if (adam == nullptr) return {};
    if (m) out.push_back(adam->exp_avg());
    if (v) out.push_back(adam->exp_avg_sq());
  }
  return out;
}

}  // namespace qsr
