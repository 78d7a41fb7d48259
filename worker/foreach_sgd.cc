#include "worker/foreach_sgd.h"

#include <ATen/Parallel.h>

#include <memory>
#include <utility>
#include <vector>

#include "worker/optimizer_state.h"

namespace qsr {
namespace {

// Whether `t` can take part in a fused update with `p`: float32 on the CPU, laid out as `p` is,
// and `p` dense (its elements fill numel consecutive slots), so that one linear pass over the
// three buffers visits matching elements.
bool SameDenseLayout(const torch::Tensor& p, const torch::Tensor& t) {
  return t.layout() == torch::kStrided && t.device().is_cpu() && t.scalar_type() == torch::kFloat &&
         t.sizes() == p.sizes() && t.strides() == p.strides();
}

bool Fusable(const torch::Tensor& p, const torch::Tensor& grad) {
  return p.device().is_cpu() && p.scalar_type() == torch::kFloat && p.layout() == torch::kStrided &&
         p.is_non_overlapping_and_dense() && SameDenseLayout(p, grad);
}

struct Coefficients {
  float lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov;
};

// One pass over elements [begin, end) of a parameter: the arithmetic of torch::optim::SGD's
// step, in its order (d = g + wd p; b = m b + (1 - dampening) d, or b = d on the first step;
// d = b, or d + m b with Nesterov; p -= lr d). The options are template arguments and the
// coefficients locals, so that the loop has no branches and no loads the compiler must assume
// aliased by the stores, and vectorises.
template <bool kDecay, bool kMomentum, bool kFirst, bool kNesterov>
void UpdateRange(float* __restrict p, const float* __restrict g, float* __restrict buf,
                 int64_t begin, int64_t end, Coefficients c) {
  const float lr = c.lr, m = c.momentum, keep = c.one_minus_dampening, wd = c.weight_decay;
  for (int64_t i = begin; i < end; ++i) {
    float d = g[i];
    if constexpr (kDecay) d = d + wd * p[i];
    if constexpr (kMomentum) {
      float b;
      if constexpr (kFirst) {
        b = d;
      } else {
        b = buf[i] * m + keep * d;
      }
      buf[i] = b;
      if constexpr (kNesterov) {
        d = d + m * b;
      } else {
        d = b;
      }
    }
    p[i] = p[i] - lr * d;
  }
}

using UpdateFn = void (*)(float*, const float*, float*, int64_t, int64_t, Coefficients);

template <bool kDecay, bool kMomentum, bool kFirst>
UpdateFn PickNesterov(bool nesterov) {
  return nesterov ? &UpdateRange<kDecay, kMomentum, kFirst, true>
                  : &UpdateRange<kDecay, kMomentum, kFirst, false>;
}

template <bool kDecay>
UpdateFn PickMomentum(bool momentum, bool first, bool nesterov) {
  if (!momentum) return &UpdateRange<kDecay, false, false, false>;
  return first ? PickNesterov<kDecay, true, true>(nesterov)
               : PickNesterov<kDecay, true, false>(nesterov);
}

// The whole parameter, in chunks of at least 64 KiB per thread of the intra-op pool (one
// thread runs it inline). `buf` is null without momentum.
void FusedUpdate(float* p, const float* g, float* buf, int64_t n, bool first,
                 const Coefficients& c) {
  const UpdateFn update = c.weight_decay != 0
                              ? PickMomentum<true>(buf != nullptr, first, c.nesterov)
                              : PickMomentum<false>(buf != nullptr, first, c.nesterov);
  at::parallel_for(0, n, 16384,
                   [&](int64_t begin, int64_t end) { update(p, g, buf, begin, end, c); });
}

// The parameters FusedUpdate does not take (other devices, dtypes or layouts): LibTorch's
// multi-tensor kernels, in torch::optim::SGD's order of operations.
template <typename State>
void ForeachUpdate(const std::vector<torch::Tensor>& params,
                   const std::vector<torch::Tensor>& grads, const torch::optim::SGDOptions& options,
                   State& states) {
  using Key = typename State::key_type;
  // d_p: the gradient plus coupled weight decay (new tensors; the gradients stay as they are).
  std::vector<torch::Tensor> d_p =
      options.weight_decay() != 0 ? at::_foreach_add(grads, params, options.weight_decay()) : grads;
  if (options.momentum() != 0) {
    std::vector<torch::Tensor> bufs(params.size()), old_bufs, old_d_p;
    for (size_t i = 0; i < params.size(); ++i) {
      const Key key = OptimizerStateKey<Key>(params[i]);
      auto it = states.find(key);
      if (it == states.end()) {
        // The first step's buffer is the step itself, as in torch::optim::SGD.
        bufs[i] = d_p[i].clone().detach();
        auto state = std::make_unique<torch::optim::SGDParamState>();
        state->momentum_buffer(bufs[i]);
        states[key] = std::move(state);
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

}  // namespace

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
    const Coefficients coef{static_cast<float>(options.lr()),
                            static_cast<float>(options.momentum()),
                            static_cast<float>(1 - options.dampening()),
                            static_cast<float>(options.weight_decay()), options.nesterov()};
    std::vector<torch::Tensor> params, grads;
    for (const torch::Tensor& p : group.params()) {
      if (!p.grad().defined()) continue;
      // CPU float32 parameters: one fused pass each instead of four, which read and write the
      // parameter, gradient and buffer about twice as often. On a small model the update is
      // memory-bound: for the mlp it was ~20% of a training step.
      if (Fusable(p, p.grad())) {
        torch::Tensor buf;
        bool first = false;
        if (options.momentum() != 0) {
          const Key key = OptimizerStateKey<Key>(p);
          auto it = state_.find(key);
          if (it == state_.end()) {
            buf = torch::empty_like(p);
            first = true;
            auto state = std::make_unique<torch::optim::SGDParamState>();
            state->momentum_buffer(buf);
            state_[key] = std::move(state);
          } else {
            buf = static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer();
            // A buffer loaded in another layout: the foreach path below walks any strides.
            if (!buf.defined() || !SameDenseLayout(p, buf)) {
              params.push_back(p);
              grads.push_back(p.grad());
              continue;
            }
          }
        }
        FusedUpdate(p.data_ptr<float>(), p.grad().data_ptr<float>(),
                    buf.defined() ? buf.data_ptr<float>() : nullptr, p.numel(), first, coef);
        // Written through the pointer: tell autograd, as an in-place op would.
        p.unsafeGetTensorImpl()->bump_version();
        if (buf.defined()) buf.unsafeGetTensorImpl()->bump_version();
        continue;
      }
      params.push_back(p);
      grads.push_back(p.grad());
    }
    if (params.empty()) continue;
    ForeachUpdate(params, grads, options, state_);
  }
  return loss;
}

}  // namespace qsr
