// Model export: a trained model as files PyTorch reads without qsr.
//
//   SavePyTorchStateDict: a dict {dotted name: tensor} of every parameter and buffer, written with
//     torch::jit::pickle_save, so Python's `torch.load(path)` returns it and
//     `model.load_state_dict(torch.load(path))` loads it into the same architecture.
//   SaveScriptedModule: a TorchScript model's scripted module carrying the trained weights, which
//     `torch.jit.load(path)` runs as it is.
//
// Both write a temporary file beside `path` and rename it, so a reader never sees half a file.
// Both copy the tensors to the CPU first and leave the model untouched. Errors name the file.
// Thread-compatible: the model must not be trained concurrently.
#ifndef QSR_WORKER_MODEL_EXPORT_H_
#define QSR_WORKER_MODEL_EXPORT_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"
#include "worker/model/torchscript_model.h"

namespace qsr {

// The file names a checkpoint folder and a run's checkpoint directory hold.
inline constexpr char kStateDictName[] = "model.pt";
inline constexpr char kScriptedModuleName[] = "model.ts";

// Parameters then buffers, PyTorch's names, detached CPU contiguous copies.
absl::Status SavePyTorchStateDict(const torch::nn::Module& model, const std::string& path);

// Same, for named tensors already collected (e.g. from a checkpoint archive).
absl::Status SavePyTorchStateDict(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                  const std::string& path);

absl::Status SaveScriptedModule(const TorchScriptModel& model, const std::string& path);

}  // namespace qsr

#endif  // QSR_WORKER_MODEL_EXPORT_H_
