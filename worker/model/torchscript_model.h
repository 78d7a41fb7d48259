// TorchScriptModel: a model scripted or traced in Python (torch.jit.script / torch.jit.trace, then
// .save(path)), trained by the worker like a built-in one.
//
// The scripted module keeps its parameters and buffers; this Model mirrors the module's hierarchy
// as plain nn::Module children holding the very same tensors, so named_parameters() and
// named_buffers() give PyTorch's dotted names ("layer1.0.conv1.weight") in the module's own order,
// and everything that works on a Model (optimizers, averaging, checkpoints, channels_last, moving
// to a device) updates the scripted module in place. train()/eval() set the scripted module's
// training flag; forward() runs its forward with one input tensor.
//
// BatchNorm: scripted BatchNorm keeps `momentum` as a TorchScript constant, so it cannot be set to
// None for a cumulative re-estimation as the built-in layers are; BatchNorms() lists each layer's
// running-statistics tensors and momentum so the evaluator can recover every batch's statistics
// from the running update instead.
//
// Thread-compatible, like every Model.
#ifndef QSR_WORKER_MODEL_TORCHSCRIPT_MODEL_H_
#define QSR_WORKER_MODEL_TORCHSCRIPT_MODEL_H_

#include <torch/script.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/models.h"

namespace qsr {

// One BatchNorm layer of a scripted module.
struct ScriptedBatchNorm {
  std::string name;  // the submodule's dotted name
  torch::Tensor running_mean;
  torch::Tensor running_var;
  torch::Tensor num_batches_tracked;  // undefined when the layer has none
  // The layer's momentum; nullopt for momentum=None (a cumulative average).
  std::optional<double> momentum;
};

class TorchScriptModel : public Model {
 public:
  // Loads `path`. Errors name the file: NotFound (no file), InvalidArgument (not a TorchScript
  // archive; saved by a newer PyTorch than this LibTorch reads; no parameters; a BatchNorm whose
  // momentum cannot be read). The model is on the CPU, in training mode.
  static absl::StatusOr<std::shared_ptr<TorchScriptModel>> Load(const std::string& path);

  torch::Tensor forward(torch::Tensor x) override;
  void train(bool on = true) override;

  const std::string& path() const { return path_; }
  // The scripted module itself (sharing this model's tensors), e.g. to save it.
  const torch::jit::Module& script() const { return module_; }
  // Every BatchNorm1d/2d/3d submodule, in module order.
  const std::vector<ScriptedBatchNorm>& BatchNorms() const { return batch_norms_; }

 private:
  TorchScriptModel(torch::jit::Module module, std::string path);

  torch::jit::Module module_;
  std::string path_;
  std::vector<ScriptedBatchNorm> batch_norms_;
};

// Checks that `model` maps a batch of `examples` (N x C x H x W) to N x num_classes logits, so a
// mismatch is reported before training: InvalidArgument naming the file, the shape it returned
// and the shape wanted. Runs in eval mode without gradients; leaves the model in training mode.
absl::Status CheckScriptedOutput(TorchScriptModel& model, const torch::Tensor& examples,
                                 int64_t num_classes);

}  // namespace qsr

#endif  // QSR_WORKER_MODEL_TORCHSCRIPT_MODEL_H_
