#include "worker/evaluator.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/data/batch_loader.h"
#include "worker/model/torchscript_model.h"
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

absl::StatusOr<EvalResult> Evaluate(Model& model, std::shared_ptr<const DataSource> test,
                                    Communicator& comm, const torch::Device& device,
                                    int64_t batch_size, int num_workers) {
  if (test == nullptr || test->size() == 0) {
    return absl::FailedPreconditionError("the test set is empty");
  }
  const int64_t n = test->size();
  const int64_t begin = n * comm.rank() / comm.size();
  const int64_t end = n * (comm.rank() + 1) / comm.size();
  std::unique_ptr<BatchLoader> loader;
  if (end > begin) {  // more ranks than examples leaves some with none
    LoaderOptions options;
    options.num_workers = std::max(1, num_workers);
    absl::StatusOr<std::unique_ptr<BatchLoader>> created =
        BatchLoader::CreateSequential(std::move(test), begin, end, batch_size, options);
    if (!created.ok()) return created.status();
    loader = std::move(*created);
  }
  torch::Tensor sums;
  torch::Tensor loss, top1, top5;
  absl::Status s = TorchCall("evaluation", [&] {
    // Sums stay on the device: one host round trip per evaluation, not per batch.
    loss = torch::zeros({}, torch::TensorOptions().device(device));
    top1 = torch::zeros({}, torch::TensorOptions().device(device).dtype(torch::kLong));
    top5 = torch::zeros_like(top1);
  });
  if (!s.ok()) return s;
  model.eval();
  while (loader != nullptr) {
    absl::StatusOr<Batch> batch = loader->Next();
    if (absl::IsOutOfRange(batch.status())) break;
    if (!batch.ok()) {
      model.train();
      return batch.status();
    }
    s = TorchCall("evaluation", [&] {
      torch::NoGradGuard no_grad;
      torch::Tensor logits = model.forward(batch->x.to(device));
      torch::Tensor y = batch->y.to(device);
      loss += torch::nn::functional::cross_entropy(
          logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
      top1 += logits.argmax(1).eq(y).sum();
      const int64_t k = std::min<int64_t>(5, logits.size(1));
      top5 += std::get<1>(logits.topk(k, 1)).eq(y.unsqueeze(1)).any(1).sum();
    });
    if (!s.ok()) {
      model.train();
      return s;
    }
  }
  model.train();
  s = TorchCall("evaluation", [&] {
    sums = torch::stack(
        {loss.to(torch::kFloat), top1.to(torch::kFloat), top5.to(torch::kFloat),
         torch::full({}, static_cast<float>(end - begin), torch::TensorOptions().device(device))});
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

absl::StatusOr<int> ReestimateScriptedBatchNorm(
    TorchScriptModel& model, const std::function<absl::StatusOr<torch::Tensor>()>& next_batch,
    int64_t micro_batches) {
  const std::vector<ScriptedBatchNorm>& layers = model.BatchNorms();
  std::vector<torch::Tensor> mean_sum(layers.size());
  std::vector<torch::Tensor> var_sum(layers.size());
  int64_t batches = 0;
  absl::Status s = absl::OkStatus();
  model.train();
  for (int64_t b = 0; s.ok() && b < micro_batches; ++b) {
    absl::StatusOr<torch::Tensor> x = next_batch();
    if (!x.ok()) {
      s = x.status();
      break;
    }
    s = TorchCall("BatchNorm re-estimation", [&] {
      torch::NoGradGuard no_grad;
      for (const ScriptedBatchNorm& bn : layers) {
        bn.running_mean.zero_();
        bn.running_var.zero_();
        if (bn.num_batches_tracked.defined()) bn.num_batches_tracked.zero_();
      }
      model.forward(*x);
      for (size_t i = 0; i < layers.size(); ++i) {
        const double m = layers[i].momentum.value_or(1.0);
        torch::Tensor mean = layers[i].running_mean.to(torch::kFloat64) / m;
        torch::Tensor var = layers[i].running_var.to(torch::kFloat64) / m;
        mean_sum[i] = mean_sum[i].defined() ? mean_sum[i] + mean : mean;
        var_sum[i] = var_sum[i].defined() ? var_sum[i] + var : var;
      }
    });
    if (s.ok()) ++batches;
  }
  if (!s.ok()) return s;
  if (batches == 0) return static_cast<int>(layers.size());
  s = TorchCall("BatchNorm re-estimation", [&] {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < layers.size(); ++i) {
      layers[i].running_mean.copy_(mean_sum[i] / static_cast<double>(batches));
      layers[i].running_var.copy_(var_sum[i] / static_cast<double>(batches));
      if (layers[i].num_batches_tracked.defined()) {
        layers[i].num_batches_tracked.fill_(batches);
      }
    }
  });
  if (!s.ok()) return s;
  return static_cast<int>(layers.size());
}

absl::StatusOr<int> ReestimateBatchNorm(Model& model, std::shared_ptr<const DataSource> train,
                                        int64_t micro_batches, int64_t batch_size, uint64_t seed,
                                        int rank, int world, const torch::Device& device,
                                        int num_workers) {
  auto* scripted = dynamic_cast<TorchScriptModel*>(&model);
  std::vector<c10::optional<double>> saved;
  int layers = 0;
  absl::Status s = absl::OkStatus();
  if (scripted != nullptr) {
    layers = static_cast<int>(scripted->BatchNorms().size());
  } else {
    s = TorchCall("BatchNorm re-estimation", [&] {
      layers = ForEachBatchNorm(model,
                                [&](auto& options, auto) { saved.push_back(options.momentum()); });
    });
  }
  if (!s.ok()) return s;
  if (layers == 0) return 0;
  SamplerConfig sampler;
  sampler.seed = seed;
  sampler.rank = rank;
  sampler.world = world;
  // A small dataset still yields full batches: at most the examples each rank has.
  sampler.local_batch = std::max<int64_t>(1, std::min(batch_size, train->size() / world));
  LoaderOptions options;
  options.num_workers = std::max(1, num_workers);
  options.augment_seed = seed;
  options.prefetch = 1;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(std::move(train), sampler, options);
  if (!loader.ok()) return loader.status();
  if (scripted != nullptr) {
    BatchLoader& batches = **loader;
    return ReestimateScriptedBatchNorm(
        *scripted,
        [&]() -> absl::StatusOr<torch::Tensor> {
          absl::StatusOr<Batch> batch = batches.Next();
          if (!batch.ok()) return batch.status();
          return batch->x.to(device);
        },
        micro_batches);
  }
  s = TorchCall("BatchNorm re-estimation", [&] {
    ForEachBatchNorm(model, [&](auto& options, auto reset) {
      options.momentum(c10::nullopt);  // cumulative average over the batches below
      reset();
    });
  });
  model.train();
  for (int64_t b = 0; s.ok() && b < micro_batches; ++b) {
    absl::StatusOr<Batch> batch = (*loader)->Next();
    if (!batch.ok()) {
      s = batch.status();
      break;
    }
    s = TorchCall("BatchNorm re-estimation", [&] {
      torch::NoGradGuard no_grad;
      model.forward(batch->x.to(device));
    });
  }
  absl::Status restored = TorchCall("BatchNorm re-estimation", [&] {
    size_t i = 0;
    ForEachBatchNorm(model, [&](auto& options, auto) { options.momentum(saved[i++]); });
  });
  if (!s.ok()) return s;
  if (!restored.ok()) return restored;
  return layers;
}

}  // namespace qsr
