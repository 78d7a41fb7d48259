#include "worker/state_snapshot.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "worker/optimizer_state.h"
#include "worker/torch_call.h"

namespace qsr {
namespace {

// The fields Adam and AdamW share (their states are distinct types with the same accessors).
template <typename AdamState>
void ForEachAdamField(AdamState& adam, const std::function<void(torch::Tensor&)>& tensor,
                      const std::function<void(int64_t&)>& step) {
  tensor(adam.exp_avg());
  tensor(adam.exp_avg_sq());
  tensor(adam.max_exp_avg_sq());
  int64_t n = adam.step();
  step(n);
  adam.step(n);
}

// Calls `fn` on every tensor of an optimizer's per-parameter state, in a fixed order, and on its
// step count. Unknown optimizer states have no tensors here (and are not restored).
void ForEachStateField(torch::optim::OptimizerParamState& s,
                       const std::function<void(torch::Tensor&)>& tensor,
                       const std::function<void(int64_t&)>& step) {
  if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(&s)) {
    tensor(sgd->momentum_buffer());
  } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(&s)) {
    ForEachAdamField(*adamw, tensor, step);
  } else if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(&s)) {
    ForEachAdamField(*adam, tensor, step);
  }
}

// dst := src, reusing dst's memory when it fits.
void CopyInto(torch::Tensor& dst, const torch::Tensor& src) {
  if (!src.defined()) {
    dst = torch::Tensor();
  } else if (dst.defined() && dst.sizes() == src.sizes() && dst.dtype() == src.dtype() &&
             dst.device() == src.device()) {
    dst.copy_(src);
  } else {
    dst = src.detach().clone();
  }
}

std::vector<torch::Tensor> ModuleTensors(torch::nn::Module& model) {
  std::vector<torch::Tensor> all = model.parameters();
  for (const torch::Tensor& b : model.buffers()) all.push_back(b);
  return all;
}

}  // namespace

absl::Status StateSnapshot::Capture(torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                    int64_t next_round) {
  return TorchCall("saving the training state", [&] {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors = ModuleTensors(model);
    module_.resize(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) CopyInto(module_[i], tensors[i]);
    auto& state = optimizer.state();
    using Key = typename std::decay_t<decltype(state)>::key_type;
    std::vector<torch::Tensor> params = model.parameters();
    optimizer_.resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      ParamState& saved = optimizer_[i];
      auto it = state.find(OptimizerStateKey<Key>(params[i]));
      saved.present = it != state.end();
      if (!saved.present) continue;
      size_t k = 0;
      ForEachStateField(
          *it->second,
          [&](torch::Tensor& t) {
            if (saved.tensors.size() <= k) saved.tensors.resize(k + 1);
            CopyInto(saved.tensors[k++], t);
          },
          [&](int64_t& step) { saved.step = step; });
    }
    next_round_ = next_round;
  });
}

absl::Status StateSnapshot::Restore(torch::nn::Module& model,
                                    torch::optim::Optimizer& optimizer) const {
  if (empty()) return absl::FailedPreconditionError("no training state was saved to return to");
  return TorchCall("restoring the training state", [&] {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> tensors = ModuleTensors(model);
    TORCH_CHECK(tensors.size() == module_.size(), "the model changed since the state was saved");
    for (size_t i = 0; i < tensors.size(); ++i) tensors[i].copy_(module_[i]);
    auto& state = optimizer.state();
    using Key = typename std::decay_t<decltype(state)>::key_type;
    std::vector<torch::Tensor> params = model.parameters();
    for (size_t i = 0; i < params.size() && i < optimizer_.size(); ++i) {
      const ParamState& saved = optimizer_[i];
      auto it = state.find(OptimizerStateKey<Key>(params[i]));
      if (!saved.present) {
        // The state was created by a step after the snapshot: forget it.
        if (it != state.end()) state.erase(it);
        continue;
      }
      TORCH_CHECK(it != state.end(), "optimizer state of parameter ", i, " disappeared");
      size_t k = 0;
      ForEachStateField(
          *it->second,
          [&](torch::Tensor& t) {
            const torch::Tensor& src = saved.tensors[k++];
            if (t.defined() && src.defined() && t.sizes() == src.sizes()) {
              t.copy_(src);
            } else {
              t = src.defined() ? src.clone() : torch::Tensor();
            }
          },
          [&](int64_t& step) { step = saved.step; });
    }
  });
}

}  // namespace qsr
