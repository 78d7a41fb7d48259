#include "worker/model/models.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/model/families.h"

namespace qsr {
namespace {

class Mlp : public Model {
 public:
  Mlp(int64_t num_classes, const ModelInput& input)
      : Model("Mlp"),
        fc1_(register_module("fc1",
                             torch::nn::Linear(input.channels * input.height * input.width, 512))),
        fc2_(register_module("fc2", torch::nn::Linear(512, 512))),
        fc3_(register_module("fc3", torch::nn::Linear(512, num_classes))) {}

  torch::Tensor forward(torch::Tensor x) override {
    x = x.flatten(1);
    x = fc1_->forward(x).relu_();
    x = fc2_->forward(x).relu_();
    return fc3_->forward(x);
  }

 private:
  torch::nn::Linear fc1_, fc2_, fc3_;
};

class Cnn : public Model {
 public:
  Cnn(int64_t num_classes, const ModelInput& input)
      : Model("Cnn"),
        conv1_(register_module(
            "conv1",
            torch::nn::Conv2d(torch::nn::Conv2dOptions(input.channels, 32, 3).padding(1)))),
        bn1_(register_module("bn1", torch::nn::BatchNorm2d(32))),
        conv2_(register_module("conv2",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)))),
        bn2_(register_module("bn2", torch::nn::BatchNorm2d(64))),
        fc1_(register_module("fc1",
                             torch::nn::Linear(64 * (input.height / 4) * (input.width / 4), 256))),
        fc2_(register_module("fc2", torch::nn::Linear(256, num_classes))) {}

  torch::Tensor forward(torch::Tensor x) override {
    namespace F = torch::nn::functional;
    x = F::max_pool2d(bn1_->forward(conv1_->forward(x)).relu_(), F::MaxPool2dFuncOptions(2));
    x = F::max_pool2d(bn2_->forward(conv2_->forward(x)).relu_(), F::MaxPool2dFuncOptions(2));
    x = fc1_->forward(x.flatten(1)).relu_();
    return fc2_->forward(x);
  }

 private:
  torch::nn::Conv2d conv1_;
  torch::nn::BatchNorm2d bn1_;
  torch::nn::Conv2d conv2_;
  torch::nn::BatchNorm2d bn2_;
  torch::nn::Linear fc1_, fc2_;
};

}  // namespace

std::vector<std::string> KnownModels() {
  return {"mlp",       "cnn",       "resnet18", "resnet34", "resnet50",
          "resnet101", "resnet152", "vit",      "vit_b16",  "vit_small"};
}

absl::StatusOr<VitConfig> VitPreset(const std::string& name) {
  VitConfig c;
  if (name == "vit_b16") return c;  // the defaults
  if (name == "vit_small") {
    c.patch = 4;
    c.dim = 192;
    c.depth = 6;
    c.heads = 3;
    c.dim_head = 64;
    c.mlp_dim = 384;
    return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ViT preset \"", name, "\"; known presets: vit_b16, vit_small"));
}

namespace {

absl::Status CheckCommon(const std::string& name, int64_t num_classes, const ModelInput& input) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", name, "\": num_classes must be >= 1, got ", num_classes));
  }
  if (input.channels < 1 || input.height < 1 || input.width < 1) {
    return absl::InvalidArgumentError(absl::StrCat("model \"", name, "\": the input ",
                                                   input.channels, "x", input.height, "x",
                                                   input.width, " must have every size >= 1"));
  }
  return absl::OkStatus();
}

absl::Status CheckVit(const std::string& name, const VitConfig& c, const ModelInput& input) {
  if (c.patch < 1 || c.depth < 1 || c.heads < 1 || c.dim_head < 1 || c.mlp_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model \"", name, "\": patch, depth, heads, dim_head and mlp_dim must be >= 1"));
  }
  if (c.dim < 8 || c.dim % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", name,
                     "\": dim must be a multiple of 4 and >= 8 (the 2-D sin-cos position "
                     "embedding), got ",
                     c.dim));
  }
  if (input.height % c.patch != 0 || input.width % c.patch != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", name, "\": the input ", input.height, "x", input.width,
                     " is not a multiple of the patch size ", c.patch));
  }
  return absl::OkStatus();
}

// Runs `build`, turning a LibTorch exception into Internal.
template <typename Build>
absl::StatusOr<std::shared_ptr<Model>> Guarded(const std::string& name, Build build) {
  try {
    return build();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("building model \"", name, "\": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("building model \"", name, "\": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<std::shared_ptr<Model>> MakeSimpleVit(const VitConfig& config, int64_t num_classes,
                                                     const ModelInput& input) {
  const std::string name = "vit";
  if (absl::Status s = CheckCommon(name, num_classes, input); !s.ok()) return s;
  if (absl::Status s = CheckVit(name, config, input); !s.ok()) return s;
  return Guarded(name, [&] { return model_internal::NewSimpleVit(config, num_classes, input); });
}

absl::StatusOr<std::shared_ptr<Model>> MakeModel(const std::string& name, int64_t num_classes,
                                                 const ModelInput& input) {
  if (absl::Status s = CheckCommon(name, num_classes, input); !s.ok()) return s;
  if (name == "mlp") {
    return Guarded(name, [&] { return std::make_shared<Mlp>(num_classes, input); });
  }
  if (name == "cnn") {
    if (input.height % 4 != 0 || input.width % 4 != 0) {
      return absl::InvalidArgumentError(absl::StrCat("model \"cnn\": the input ", input.height, "x",
                                                     input.width,
                                                     " must be a multiple of 4 a side"));
    }
    return Guarded(name, [&] { return std::make_shared<Cnn>(num_classes, input); });
  }
  for (int depth : {18, 34, 50, 101, 152}) {
    if (name == absl::StrCat("resnet", depth)) {
      return Guarded(name, [&] { return model_internal::NewResNet(depth, num_classes, input); });
    }
  }
  if (name == "vit" || name == "vit_b16" || name == "vit_small") {
    const bool small =
        name == "vit_small" || (name == "vit" && input.height <= 64 && input.width <= 64);
    absl::StatusOr<VitConfig> config = VitPreset(small ? "vit_small" : "vit_b16");
    if (!config.ok()) return config.status();
    if (absl::Status s = CheckVit(name, *config, input); !s.ok()) return s;
    return Guarded(name, [&] { return model_internal::NewSimpleVit(*config, num_classes, input); });
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model \"", name, "\"; known models: ", absl::StrJoin(KnownModels(), ", ")));
}

absl::StatusOr<std::shared_ptr<Model>> MakeModel(const std::string& name, int64_t num_classes) {
  return MakeModel(name, num_classes, ModelInput{});
}

int64_t NumParameters(const Model& model) {
  int64_t n = 0;
  for (const torch::Tensor& p : model.parameters()) n += p.numel();
  return n;
}

}  // namespace qsr
