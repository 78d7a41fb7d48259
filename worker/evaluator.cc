#include "worker/evaluator.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/torch_call.h"

namespace qsr {
namespace {

// Calls fn(options, reset) for every BatchNorm layer of the model.
template <typename Fn>
int ForEachBatchNorm(Model& model, Fn&& fn) {
  int n = 0;
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      fn(bn->options, [bn] { bn->reset_running_stats(); });
      ++n;
    } else if (auto* bn1 = m->as<torch::nn::BatchNorm1d>()) {
      fn(bn1->options, [bn1] { bn1->reset_running_stats(); });
      ++n;
    }
  }
  return n;
}

}  // namespace

absl::StatusOr<EvalResult> Evaluate(Model& model, const Dataset& test, Communicator& comm,
                                    const torch::Device& device, int64_t batch_size) {
  const int64_t n = test.size();
  const int64_t begin = n * comm.rank() / comm.size();
  const int64_t end = n * (comm.rank() + 1) / comm.size();
  torch::Tensor sums;
  absl::Status s = TorchCall("evaluation", [&] {
    torch::NoGradGuard no_grad;
    model.eval();
    // Sums stay on the device: one host round trip per evaluation, not per batch.
    torch::Tensor loss = torch::zeros({}, torch::TensorOptions().device(device));
    torch::Tensor top1 =
        torch::zeros({}, torch::TensorOptions().device(device).dtype(torch::kLong));
    torch::Tensor top5 = torch::zeros_like(top1);
    for (int64_t i = begin; i < end; i += batch_size) {
      const int64_t j = std::min(end, i + batch_size);
      torch::Tensor logits = model.forward(test.images.slice(0, i, j).to(device));
      torch::Tensor y = test.labels.slice(0, i, j).to(device);
      loss += torch::nn::functional::cross_entropy(
          logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
      top1 += logits.argmax(1).eq(y).sum();
      const int64_t k = std::min<int64_t>(5, logits.size(1));
      top5 += std::get<1>(logits.topk(k, 1)).eq(y.unsqueeze(1)).any(1).sum();
    }
    sums = torch::stack(
        {loss.to(torch::kFloat), top1.to(torch::kFloat), top5.to(torch::kFloat),
         torch::full({}, static_cast<float>(end - begin), torch::TensorOptions().device(device))});
    model.train();
  });
  if (!s.ok()) return s;
  if (absl::Status r = comm.AllReduceSum(sums); !r.ok()) return r;
  sums = sums.cpu();
  EvalResult result;
  result.examples = static_cast<int64_t>(sums[3].item<double>());
  if (result.examples == 0) return absl::FailedPreconditionError("the test set is empty");
  result.loss = sums[0].item<double>() / static_cast<double>(result.examples);
  result.acc1 = sums[1].item<double>() / static_cast<double>(result.examples);
  result.acc5 = sums[2].item<double>() / static_cast<double>(result.examples);
  return result;
}

absl::StatusOr<int> ReestimateBatchNorm(Model& model, const Dataset& train, int64_t micro_batches,
                                        int64_t batch_size, uint64_t seed,
                                        const torch::Device& device) {
  int layers = 0;
  absl::Status s = TorchCall("BatchNorm re-estimation", [&] {
    std::vector<c10::optional<double>> saved;
    layers = ForEachBatchNorm(model, [&](auto& options, auto reset) {
      saved.push_back(options.momentum());
      options.momentum(c10::nullopt);  // cumulative average over the batches below
      reset();
    });
    if (layers == 0) return;
    torch::NoGradGuard no_grad;
    model.train();
    torch::Generator gen = at::detail::createCPUGenerator(seed);
    for (int64_t b = 0; b < micro_batches; ++b) {
      torch::Tensor idx = torch::randint(train.size(), {batch_size}, gen, torch::kLong);
      model.forward(train.images.index_select(0, idx).to(device));
    }
    size_t i = 0;
    ForEachBatchNorm(model, [&](auto& options, auto) { options.momentum(saved[i++]); });
  });
  if (!s.ok()) return s;
  return layers;
}

}  // namespace qsr
