#include "worker/checkpoint_writer.h"

#include "absl/strings/str_cat.h"
#include "worker/checkpoint.h"
#include "worker/model_export.h"
#include "worker/torch_call.h"

namespace qsr {

absl::StatusOr<WrittenCheckpoint> WriteCheckpoint(const torch::nn::Module& model,
                                                  const torch::optim::Optimizer& optimizer,
                                                  Communicator& comm, const torch::Device& device,
                                                  const CheckpointPoint& point) {
  const std::string folder = CheckpointStepDir(point.dir, point.step);
  CheckpointManifest manifest;
  manifest.step = point.step;
  manifest.epoch = point.epoch;
  manifest.round = point.round;
  manifest.h = point.h;
  manifest.world_size = comm.size();
  manifest.recipe_yaml = point.recipe_yaml;
  manifest.model = ModelCheckpointName(point.step, point.epoch);
  const std::string opt = OptimizerCheckpointName(point.step, point.epoch);
  std::vector<std::string> files = {manifest.model};
  if (point.save_optimizer) {
    manifest.per_rank = point.per_rank;
    manifest.optimizer = point.per_rank ? opt : opt + ".pt";
    if (point.per_rank) {
      for (int r = 0; r < comm.size(); ++r) files.push_back(absl::StrCat(opt, "/rank=", r, ".pt"));
    } else {
      files.push_back(manifest.optimizer);
    }
  }

  // Beside LibTorch's archive, the same weights as files PyTorch reads (model_export.h).
  const auto* scripted = dynamic_cast<const TorchScriptModel*>(&model);
  files.push_back(kStateDictName);
  if (scripted != nullptr) files.push_back(kScriptedModuleName);

  absl::Status mine;
  if (comm.rank() == 0) mine = SaveModule(model, folder + "/" + manifest.model);
  if (mine.ok() && comm.rank() == 0) {
    mine = SavePyTorchStateDict(model, absl::StrCat(folder, "/", kStateDictName));
  }
  if (mine.ok() && comm.rank() == 0 && scripted != nullptr) {
    mine = SaveScriptedModule(*scripted, absl::StrCat(folder, "/", kScriptedModuleName));
  }
  if (mine.ok() && point.save_optimizer && (point.per_rank || comm.rank() == 0)) {
    mine = SaveOptimizer(
        optimizer, point.per_rank ? absl::StrCat(folder, "/", opt, "/rank=", comm.rank(), ".pt")
                                  : folder + "/" + manifest.optimizer);
  }
  // Every part must be on disk before rank 0 commits: one all-reduce of failure flags.
  torch::Tensor failed;
  if (absl::Status s = TorchCall("checkpoint flags",
                                 [&] {
                                   failed = torch::full({1}, mine.ok() ? 0.0f : 1.0f,
                                                        torch::TensorOptions().device(device));
                                 });
      !s.ok()) {
    return s;
  }
  if (absl::Status s = comm.AllReduceSum(failed); !s.ok()) return s;
  int failures = 0;
  if (absl::Status s = TorchCall("checkpoint flags",
                                 [&] { failures = static_cast<int>(failed.cpu().item<float>()); });
      !s.ok()) {
    return s;
  }
  if (!mine.ok()) return mine;
  if (failures > 0) {
    return absl::UnavailableError(absl::StrCat("checkpoint at step ", point.step, ": ", failures,
                                               " other worker(s) could not write their part"));
  }
  WrittenCheckpoint written;
  if (comm.rank() != 0) return written;
  for (const std::string& rel : files) {
    absl::StatusOr<ManifestFile> f = DigestFile(folder + "/" + rel);
    if (!f.ok()) return f.status();
    f->path = rel;
    written.bytes += f->bytes;
    manifest.files.push_back(*std::move(f));
  }
  if (absl::Status s = WriteManifest(folder, manifest); !s.ok()) return s;
  written.manifest_path = absl::StrCat(folder, "/", kManifestName);
  return written;
}

}  // namespace qsr
