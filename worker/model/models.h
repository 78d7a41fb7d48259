// The trainable architectures, built by name.
//
// Submodules are registered under fixed names in a fixed order, so parameters(),
// named_parameters() and named_buffers() list tensors in the same order in every process; model
// averaging flattens them in that order. The names follow the reference PyTorch implementations
// (torchvision's ResNet, vit-pytorch's SimpleViT), so a state_dict saved by PyTorch has the same
// keys. Initial values come from the global generator: a caller that wants identical replicas
// calls torch::manual_seed(s) (same s everywhere) right before MakeModel().
//
// Thread-compatible: a Model is used by one thread at a time; MakeModel() itself consumes the
// global generator, so do not build models concurrently if their init must be reproducible.
#ifndef QSR_WORKER_MODEL_MODELS_H_
#define QSR_WORKER_MODEL_MODELS_H_

#include <torch/nn/module.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qsr {

class Model : public torch::nn::Module {
 public:
  using torch::nn::Module::Module;
  // x: float N x C x H x W (NCHW or channels_last) with the ModelInput the model was built for;
  // returns logits N x num_classes.
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

// The shape of one input image. Fashion-MNIST: 1x28x28; CIFAR: 3x32x32; ImageNet: 3x224x224.
struct ModelInput {
  int64_t channels = 1;
  int64_t height = 28;
  int64_t width = 28;
};

// SimpleViT's hyper-parameters (vit-pytorch's SimpleViT, as the authors trained it).
struct VitConfig {
  int64_t patch = 16;     // square patches; the image height and width must be multiples
  int64_t dim = 768;      // token width; a multiple of 4, >= 8 (the 2-D sin-cos embedding)
  int64_t depth = 12;     // transformer blocks
  int64_t heads = 12;     // attention heads
  int64_t dim_head = 64;  // width of one head (inner width = heads * dim_head)
  int64_t mlp_dim = 3072;
};

// Names MakeModel() accepts: {"mlp", "cnn", "resnet18", "resnet34", "resnet50", "resnet101",
// "resnet152", "vit", "vit_b16", "vit_small"}.
std::vector<std::string> KnownModels();

// "mlp": flatten, Linear C*H*W-512, ReLU, Linear 512-512, ReLU, Linear 512-num_classes
//        (669,706 parameters for 10 classes at 1x28x28).
// "cnn": Conv3x3 C-32 (pad 1), BN, ReLU, MaxPool2; Conv3x3 32-64 (pad 1), BN, ReLU, MaxPool2;
//        flatten, Linear 64*(H/4)*(W/4)-256, ReLU, Linear 256-num_classes (824,650 parameters for
//        10 classes at 1x28x28).
// "resnet18/34/50/101/152": torchvision's ResNet v1.5 (BasicBlock / Bottleneck, stride on the 3x3
//        conv; kaiming-normal fan-out conv init, BN weight 1 and bias 0, no zero-init of the last
//        BN). For 3x224x224 and 1000 classes the parameter counts are torchvision's: 11,689,512,
//        21,797,672, 25,557,032, 44,549,160, 60,192,808. Inputs of at most 64 pixels a side get
//        the small-image stem (3x3 conv, stride 1, no max-pool: the usual CIFAR variant); larger
//        ones the ImageNet stem (7x7 conv, stride 2, 3x3 max-pool, stride 2).
// "vit_b16": SimpleViT with VitPreset("vit_b16"); "vit_small": with VitPreset("vit_small");
// "vit": vit_small for inputs of at most 64 pixels a side, vit_b16 otherwise.
// InvalidArgument, listing the known models, for an unknown name; InvalidArgument for
// num_classes < 1 or an input the model cannot take (non-positive sizes, cnn sides not multiples
// of 4, ViT sides not multiples of the patch). Internal for a LibTorch error. The model is on the
// CPU, float32, in training mode.
absl::StatusOr<std::shared_ptr<Model>> MakeModel(const std::string& name, int64_t num_classes,
                                                 const ModelInput& input);
// The same for 1x28x28 inputs (Fashion-MNIST).
absl::StatusOr<std::shared_ptr<Model>> MakeModel(const std::string& name, int64_t num_classes = 10);

// vit_b16: patch 16, dim 768, depth 12, heads 12, dim_head 64, mlp 3072 (86,381,800 parameters
// for 1000 classes at 3x224x224). vit_small: patch 4, dim 192, depth 6, heads 3, dim_head 64,
// mlp 384 (for 32x32 or 28x28 images). InvalidArgument for another name.
absl::StatusOr<VitConfig> VitPreset(const std::string& name);

// SimpleViT with explicit hyper-parameters. The patch embedding flattens each patch in
// (row, column, channel) order (vit-pytorch's "b c (h p1) (w p2) -> b (h w) (p1 p2 c)"), then
// LayerNorm, Linear, LayerNorm; adds the fixed 2-D sin-cos position embedding (temperature 10000;
// not a parameter or buffer); pre-norm blocks (LayerNorm + attention without biases, LayerNorm +
// Linear-GELU-Linear); mean pooling over tokens; head LayerNorm + Linear. Errors as MakeModel().
absl::StatusOr<std::shared_ptr<Model>> MakeSimpleVit(const VitConfig& config, int64_t num_classes,
                                                     const ModelInput& input);

// Number of scalar parameters (buffers excluded).
int64_t NumParameters(const Model& model);

}  // namespace qsr

#endif  // QSR_WORKER_MODEL_MODELS_H_
