// qsr-bench-step: times a plain LibTorch training-step loop, for comparing C++ with Python PyTorch
// (bench/train_step_bench.py runs the same loop) on the same device, model and batch.
//
// Each step: gradients dropped (ClearGradients, as qsr-worker does), forward, cross-entropy,
// backward, SGD step (momentum 0.9, weight decay 5e-4, as the Fashion-MNIST recipe). The inputs are
// a few synthetic batches generated on the device up front, so the loop measures compute and
// framework overhead, not data loading; there is no host synchronisation inside the timed loop.
// Prints one line:
//   bench impl=cpp model=... batch=... steps=... device=... samples_per_s=... step_ms=...
//
// Models: "mlp" and "cnn" from the worker's zoo (1x28x28 inputs), and "resnet18", defined here
// because the zoo has no ResNet: the CIFAR variant (3x3 stem, no max-pool, BasicBlocks [2,2,2,2],
// widths 64-512) on 3x32x32 inputs, 11.2M parameters.
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "worker/clear_gradients.h"
#include "worker/foreach_sgd.h"
#include "worker/heap_policy.h"
#include "worker/model/memory_format.h"
#include "worker/model/models.h"
#include "worker/model/torchscript_model.h"

namespace qsr {
namespace {

class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride)
      : conv1_(register_module(
            "conv1",
            torch::nn::Conv2d(
                torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)))),
        bn1_(register_module("bn1", torch::nn::BatchNorm2d(out))),
        conv2_(register_module(
            "conv2",
            torch::nn::Conv2d(torch::nn::Conv2dOptions(out, out, 3).padding(1).bias(false)))),
        bn2_(register_module("bn2", torch::nn::BatchNorm2d(out))) {
    if (stride != 1 || in != out) {
      shortcut_ = register_module(
          "shortcut",
          torch::nn::Sequential(
              torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)),
              torch::nn::BatchNorm2d(out)));
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = bn1_->forward(conv1_->forward(x)).relu_();
    out = bn2_->forward(conv2_->forward(out));
    out += shortcut_ ? shortcut_->forward(x) : x;
    return out.relu_();
  }

 private:
  torch::nn::Conv2d conv1_;
  torch::nn::BatchNorm2d bn1_;
  torch::nn::Conv2d conv2_;
  torch::nn::BatchNorm2d bn2_;
  torch::nn::Sequential shortcut_{nullptr};
};
TORCH_MODULE(BasicBlock);

class ResNet18 : public Model {
 public:
  explicit ResNet18(int64_t num_classes)
      : stem_(register_module(
            "conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 64, 3).padding(1).bias(false)))),
        bn_(register_module("bn1", torch::nn::BatchNorm2d(64))),
        fc_(register_module("fc", torch::nn::Linear(512, num_classes))) {
    int64_t in = 64;
    const int64_t widths[] = {64, 128, 256, 512};
    for (int i = 0; i < 4; ++i) {
      torch::nn::Sequential layer;
      for (int b = 0; b < 2; ++b) {
        const int64_t stride = (i > 0 && b == 0) ? 2 : 1;
        layer->push_back(BasicBlock(in, widths[i], stride));
        in = widths[i];
      }
      layers_.push_back(register_module("layer" + std::to_string(i + 1), layer));
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    x = bn_->forward(stem_->forward(x)).relu_();
    for (auto& layer : layers_) x = layer->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc_->forward(x);
  }

 private:
  torch::nn::Conv2d stem_;
  torch::nn::BatchNorm2d bn_;
  torch::nn::Linear fc_;
  std::vector<torch::nn::Sequential> layers_;
};

void Synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

int Run(int argc, char** argv) {
  FlagParser flags("qsr-bench-step",
                   "qsr-bench-step [--model cnn|mlp|resnet18|torchscript] [--model-path FILE] "
                   "[--batch 256] [--steps 200] "
                   "[--warmup 30] [--device cuda:0]\n"
                   "Times forward+backward+SGD steps on synthetic on-device data.");
  flags.Add("model", "cnn",
            "mlp, cnn (1x28x28), resnet18 (3x32x32) or torchscript (--model-path, 1x28x28)");
  flags.Add("model-path", "", "with --model torchscript: a module saved by torch.jit.save");
  flags.Add("batch", "256", "samples per step");
  flags.Add("steps", "200", "timed steps");
  flags.Add("warmup", "30", "untimed steps first (allocator, cuDNN plans)");
  flags.Add("device", "cuda:0", "cpu or cuda:N");
  flags.Add("optimizer", "foreach", "foreach (the worker's SGD) or sgd (LibTorch's)");
  flags.Add("threads", "0", "intra-op threads (0 = LibTorch's default)");
  flags.Add("memory-format", "contiguous",
            "contiguous or channels_last (the recipe's memory_format: 4-D weights and inputs)");
  flags.Add("heap", "keep",
            "keep (qsr-worker's default: freed memory is reused) or system (glibc's defaults); "
            "see worker/heap_policy.h");
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (absl::Status s = ApplyHeapPolicy(flags.Get("heap")); !s.ok()) {
    std::cerr << "qsr-bench-step: --heap: " << s.message() << "\n";
    return absl::IsInvalidArgument(s) ? 2 : 1;
  }
  absl::StatusOr<int64_t> batch = flags.GetInt("batch");
  absl::StatusOr<int64_t> steps = flags.GetInt("steps");
  absl::StatusOr<int64_t> warmup = flags.GetInt("warmup");
  absl::StatusOr<int64_t> threads = flags.GetInt("threads");
  if (!batch.ok() || !steps.ok() || !warmup.ok() || !threads.ok() || *batch < 1 || *steps < 1 ||
      *warmup < 0 || *threads < 0) {
    std::cerr << "qsr-bench-step: --batch and --steps must be >= 1, --warmup and --threads >= 0\n";
    return 2;
  }
  if (*threads > 0) torch::set_num_threads(static_cast<int>(*threads));
  const torch::Device device(flags.Get("device"));
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::cerr << "qsr-bench-step: " << device.str() << ": LibTorch sees no CUDA device\n";
    return 2;
  }

  torch::manual_seed(1);
  const std::string name = flags.Get("model");
  std::shared_ptr<Model> model;
  std::vector<int64_t> shape;
  if (name == "resnet18") {
    model = std::make_shared<ResNet18>(10);
    shape = {*batch, 3, 32, 32};
  } else if (name == "torchscript") {
    // As the worker trains `model: torchscript`: the same Model wrapper and optimizer.
    absl::StatusOr<std::shared_ptr<TorchScriptModel>> scripted =
        TorchScriptModel::Load(flags.Get("model-path"));
    if (!scripted.ok()) {
      std::cerr << "qsr-bench-step: --model-path: " << scripted.status().message() << "\n";
      return 2;
    }
    model = *scripted;
    shape = {*batch, 1, 28, 28};
  } else {
    absl::StatusOr<std::shared_ptr<Model>> zoo = MakeModel(name, 10);
    if (!zoo.ok()) {
      std::cerr << "qsr-bench-step: " << zoo.status().message() << " (or resnet18)\n";
      return 2;
    }
    model = *zoo;
    shape = {*batch, 1, 28, 28};
  }
  model->to(device);
  model->train();
  const std::string memory_format = flags.Get("memory-format");
  if (memory_format != "contiguous" && memory_format != "channels_last") {
    std::cerr << "qsr-bench-step: --memory-format \"" << memory_format
              << "\" is not one of: contiguous, channels_last\n";
    return 2;
  }
  const bool channels_last = memory_format == "channels_last";
  if (channels_last) ConvertToChannelsLast(*model);
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();
  // The worker's optimizer (multi-tensor updates, as torch.optim.SGD's default on CUDA); "sgd" is
  // LibTorch's per-parameter one.
  const torch::optim::SGDOptions sgd_options =
      torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(5e-4);
  std::unique_ptr<torch::optim::Optimizer> owned;
  if (flags.Get("optimizer") == "foreach") {
    owned = std::make_unique<ForeachSGD>(model->parameters(), sgd_options);
  } else if (flags.Get("optimizer") == "sgd") {
    owned = std::make_unique<torch::optim::SGD>(model->parameters(), sgd_options);
  } else {
    std::cerr << "qsr-bench-step: --optimizer \"" << flags.Get("optimizer")
              << "\" is not one of: foreach, sgd\n";
    return 2;
  }
  torch::optim::Optimizer& optimizer = *owned;

  constexpr int kBatches = 8;
  std::vector<torch::Tensor> xs, ys;
  for (int i = 0; i < kBatches; ++i) {
    torch::Tensor x = torch::randn(shape, torch::TensorOptions().device(device));
    xs.push_back(channels_last ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x);
    ys.push_back(torch::randint(0, 10, {*batch},
                                torch::TensorOptions().dtype(torch::kInt64).device(device)));
  }
  torch::Tensor loss;
  auto step = [&](int64_t i) {
    ClearGradients(optimizer);
    loss = torch::nn::functional::cross_entropy(model->forward(xs[i % kBatches]), ys[i % kBatches]);
    loss.backward();
    optimizer.step();
  };
  for (int64_t i = 0; i < *warmup; ++i) step(i);
  Synchronize(device);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < *steps; ++i) step(i);
  Synchronize(device);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << absl::StrFormat(
                   "bench impl=cpp model=%s batch=%d steps=%d device=%s params=%d optimizer=%s "
                   "memory_format=%s heap=%s samples_per_s=%.0f step_ms=%.3f final_loss=%.4f",
                   name, *batch, *steps, device.str(), params, flags.Get("optimizer"),
                   memory_format, flags.Get("heap"), static_cast<double>(*batch * *steps) / seconds,
                   1000.0 * seconds / *steps, loss.item<double>())
            << std::endl;
  return 0;
}

}  // namespace
}  // namespace qsr

int main(int argc, char** argv) {
  try {
    return qsr::Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "qsr-bench-step: " << e.what() << "\n";
    return 1;
  }
}
