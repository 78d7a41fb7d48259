#include "worker/model/models.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace qsr {
namespace {

class Mlp : public Model {
 public:
  explicit Mlp(int64_t num_classes)
      : Model("Mlp"),
        fc1_(register_module("fc1", torch::nn::Linear(784, 512))),
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
  explicit Cnn(int64_t num_classes)
      : Model("Cnn"),
        conv1_(register_module("conv1",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3).padding(1)))),
        bn1_(register_module("bn1", torch::nn::BatchNorm2d(32))),
        conv2_(register_module("conv2",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1)))),
        bn2_(register_module("bn2", torch::nn::BatchNorm2d(64))),
        fc1_(register_module("fc1", torch::nn::Linear(64 * 7 * 7, 256))),
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

std::vector<std::string> KnownModels() { return {"mlp", "cnn"}; }

absl::StatusOr<std::shared_ptr<Model>> MakeModel(const std::string& name, int64_t num_classes) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", name, "\": num_classes must be >= 1, got ", num_classes));
  }
  try {
    if (name == "mlp") return std::shared_ptr<Model>(std::make_shared<Mlp>(num_classes));
    if (name == "cnn") return std::shared_ptr<Model>(std::make_shared<Cnn>(num_classes));
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("building model \"", name, "\": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("building model \"", name, "\": ", e.what()));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model \"", name, "\"; known models: ", absl::StrJoin(KnownModels(), ", ")));
}

int64_t NumParameters(const Model& model) {
  int64_t n = 0;
  for (const torch::Tensor& p : model.parameters()) n += p.numel();
  return n;
}

}  // namespace qsr
