#include "worker/foreach_sgd.h"

#include <memory>
#include <utility>
#include <vector>

#include "worker/optimizer_state.h"

namespace qsr {

torch::Tensor ForeachSGD::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  using Key = typename std::decay_t<decltype(state_)>::key_type;
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const torch::optim::SGDOptions&>(group.options());
    std::vector<torch::Tensor> params, grads;
    for (const torch::Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      params.push_back(p);
      grads.push_back(p.grad());
    }
    if (params.empty()) continue;
    // d_p: the gradient plus coupled weight decay (new tensors; the gradients stay as they are).
    std::vector<torch::Tensor> d_p = options.weight_decay() != 0
                                         ? at::_foreach_add(grads, params, options.weight_decay())
                                         : grads;
    if (options.momentum() != 0) {
      std::vector<torch::Tensor> bufs(params.size()), old_bufs, old_d_p;
      for (size_t i = 0; i < params.size(); ++i) {
        const Key key = OptimizerStateKey<Key>(params[i]);
        auto it = state_.find(key);
        if (it == state_.end()) {
          // The first step's buffer is the step itself, as in torch::optim::SGD.
          bufs[i] = d_p[i].clone().detach();
          auto state = std::make_unique<torch::optim::SGDParamState>();
          state->momentum_buffer(bufs[i]);
          state_[key] = std::move(state);
        } else {
          bufs[i] = static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer();
          old_bufs.push_back(bufs[i]);
          old_d_p.push_back(d_p[i]);
        }
      }
      if (!old_bufs.empty()) {
        at::_foreach_mul_(old_bufs, options.momentum());
        at::_foreach_add_(old_bufs, old_d_p, 1 - options.dampening());
      }
      d_p = options.nesterov() ? at::_foreach_add(d_p, bufs, options.momentum()) : bufs;
    }
    at::_foreach_add_(params, d_p, -options.lr());
  }
  return loss;
}

}  // namespace qsr
