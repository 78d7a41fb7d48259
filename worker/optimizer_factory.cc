#include "worker/optimizer_factory.h"

#include <string>
#include <vector>

#include "worker/foreach_sgd.h"

namespace qsr {
namespace {

// Splits parameters into those that decay and those that do not (biases, norm weights).
std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> SplitByDecay(
    torch::nn::Module& model) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const torch::Tensor& p : model.parameters()) (p.dim() <= 1 ? no_decay : decay).push_back(p);
  return {decay, no_decay};
}

template <typename Options, typename Opt>
std::unique_ptr<torch::optim::Optimizer> Build(const Recipe& r, torch::nn::Module& model,
                                               const Options& options) {
  if (!r.group_weight) return std::make_unique<Opt>(model.parameters(), options);
  auto [decay, no_decay] = SplitByDecay(model);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<Options>(options));
  Options without = options;
  without.weight_decay(0.0);
  groups.emplace_back(no_decay, std::make_unique<Options>(without));
  return std::make_unique<Opt>(groups, options);
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const Recipe& r, torch::nn::Module& model) {
  if (r.Adam()) {
    return Build<torch::optim::AdamWOptions, torch::optim::AdamW>(
        r, model,
        torch::optim::AdamWOptions(r.max_lr)
            .betas({r.beta1, r.beta2})
            .eps(r.eps)
            .weight_decay(r.wd));
  }
  return Build<torch::optim::SGDOptions, ForeachSGD>(r, model,
                                                     torch::optim::SGDOptions(r.max_lr)
                                                         .momentum(r.momentum)
                                                         .nesterov(r.nesterov)
                                                         .weight_decay(r.wd));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace qsr
