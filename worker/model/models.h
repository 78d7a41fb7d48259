// The trainable architectures, built by name.
//
// Submodules are registered under fixed names in a fixed order, so parameters(),
// named_parameters() and named_buffers() list tensors in the same order in every process; model
// averaging flattens them in that order. Initial values come from LibTorch's default
// initialisers and hence from the global generator: a caller that wants identical replicas calls
// torch::manual_seed(s) (same s everywhere) right before MakeModel().
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
  // x: float32 N x 1 x 28 x 28 (NCHW or channels_last); returns logits N x num_classes.
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

// Names MakeModel() accepts: {"mlp", "cnn"}.
std::vector<std::string> KnownModels();

// "mlp": flatten, Linear 784-512, ReLU, Linear 512-512, ReLU, Linear 512-num_classes
//        (669,706 parameters for 10 classes).
// "cnn": Conv3x3 1-32 (pad 1), BN, ReLU, MaxPool2; Conv3x3 32-64 (pad 1), BN, ReLU, MaxPool2;
//        flatten, Linear 3136-256, ReLU, Linear 256-num_classes (824,650 parameters for 10).
// InvalidArgument, listing the known models, for an unknown name or num_classes < 1; Internal for a
// LibTorch error. The model is on the CPU, float32, in training mode.
absl::StatusOr<std::shared_ptr<Model>> MakeModel(const std::string& name, int64_t num_classes = 10);

// Number of scalar parameters (buffers excluded).
int64_t NumParameters(const Model& model);

}  // namespace qsr

#endif  // QSR_WORKER_MODEL_MODELS_H_
