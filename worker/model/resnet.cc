// torchvision's ResNet (torchvision/models/resnet.py, v1.5: the stride sits on the 3x3 conv of a
// Bottleneck), with a small-image stem for CIFAR-size inputs. Module names and registration order
// follow torchvision so parameters, buffers and state_dict keys line up:
//   conv1, bn1, layer1..layer4 (blocks "0", "1", ...: conv1, bn1, conv2, bn2[, conv3, bn3]
//   [, downsample.0 (1x1 conv), downsample.1 (BN)]), fc.
#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <string>
#include <vector>

#include "worker/model/families.h"

namespace qsr::model_internal {
namespace {

namespace nn = torch::nn;

nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// BasicBlock (two 3x3 convs, expansion 1) or Bottleneck (1x1, 3x3 with the stride, 1x1;
// expansion 4).
class Block : public nn::Module {
 public:
  Block(bool bottleneck, int64_t in, int64_t planes, int64_t stride) {
    const int64_t out = bottleneck ? planes * 4 : planes;
    if (bottleneck) {
      conv1_ = register_module("conv1", Conv(in, planes, 1, 1, 0));
      bn1_ = register_module("bn1", nn::BatchNorm2d(planes));
      conv2_ = register_module("conv2", Conv(planes, planes, 3, stride, 1));
      bn2_ = register_module("bn2", nn::BatchNorm2d(planes));
      conv3_ = register_module("conv3", Conv(planes, out, 1, 1, 0));
      bn3_ = register_module("bn3", nn::BatchNorm2d(out));
    } else {
      conv1_ = register_module("conv1", Conv(in, planes, 3, stride, 1));
      bn1_ = register_module("bn1", nn::BatchNorm2d(planes));
      conv2_ = register_module("conv2", Conv(planes, planes, 3, 1, 1));
      bn2_ = register_module("bn2", nn::BatchNorm2d(planes));
    }
    if (stride != 1 || in != out) {
      nn::Sequential downsample;
      downsample->push_back(Conv(in, out, 1, stride, 0));
      downsample->push_back(nn::BatchNorm2d(out));
      downsample_ = register_module("downsample", downsample);
    }
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = bn1_->forward(conv1_->forward(x)).relu_();
    out = bn2_->forward(conv2_->forward(out));
    if (conv3_) out = bn3_->forward(conv3_->forward(out.relu_()));
    torch::Tensor identity = downsample_ ? downsample_->forward(x) : x;
    return out.add_(identity).relu_();
  }

 private:
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  nn::Sequential downsample_{nullptr};
};

class ResNet : public Model {
 public:
  ResNet(bool bottleneck, const std::vector<int>& blocks, int64_t num_classes,
         const ModelInput& input)
      : Model("ResNet"),
        small_stem_(input.height <= 64 && input.width <= 64),
        conv1_(register_module("conv1", small_stem_ ? Conv(input.channels, 64, 3, 1, 1)
                                                    : Conv(input.channels, 64, 7, 2, 3))),
        bn1_(register_module("bn1", nn::BatchNorm2d(64))) {
    int64_t in = 64;
    const int64_t expansion = bottleneck ? 4 : 1;
    for (size_t i = 0; i < blocks.size(); ++i) {
      const int64_t planes = int64_t{64} << i;
      nn::ModuleList layer;
      for (int b = 0; b < blocks[i]; ++b) {
        auto block =
            std::make_shared<Block>(bottleneck, in, planes, b == 0 && i > 0 ? int64_t{2} : 1);
        layer->push_back(block);
        blocks_.push_back(block);
        in = planes * expansion;
      }
      register_module("layer" + std::to_string(i + 1), layer);
    }
    fc_ = register_module("fc", nn::Linear(in, num_classes));
    // torchvision's init; Linear keeps LibTorch's default (the same as PyTorch's).
    for (const std::shared_ptr<nn::Module>& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<nn::Conv2d>()) {
        nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
        nn::init::ones_(bn->weight);
        nn::init::zeros_(bn->bias);
      }
    }
  }

  torch::Tensor forward(torch::Tensor x) override {
    namespace F = torch::nn::functional;
    x = bn1_->forward(conv1_->forward(x)).relu_();
    if (!small_stem_) x = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    for (const std::shared_ptr<Block>& block : blocks_) x = block->forward(x);
    return fc_->forward(x.mean({2, 3}));  // adaptive average pooling to 1x1, flatten
  }

 private:
  const bool small_stem_;
  nn::Conv2d conv1_;
  nn::BatchNorm2d bn1_;
  std::vector<std::shared_ptr<Block>> blocks_;  // registered through the layerN lists
  nn::Linear fc_{nullptr};
};

}  // namespace

std::shared_ptr<Model> NewResNet(int depth, int64_t num_classes, const ModelInput& input) {
  switch (depth) {
    case 18:
      return std::make_shared<ResNet>(false, std::vector<int>{2, 2, 2, 2}, num_classes, input);
    case 34:
      return std::make_shared<ResNet>(false, std::vector<int>{3, 4, 6, 3}, num_classes, input);
    case 50:
      return std::make_shared<ResNet>(true, std::vector<int>{3, 4, 6, 3}, num_classes, input);
    case 101:
      return std::make_shared<ResNet>(true, std::vector<int>{3, 4, 23, 3}, num_classes, input);
    default:  // 152
      return std::make_shared<ResNet>(true, std::vector<int>{3, 8, 36, 3}, num_classes, input);
  }
}

}  // namespace qsr::model_internal
