// qsr-export: a committed checkpoint's weights as a PyTorch state dict. See --help.
#include <torch/script.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint_manifest.h"
#include "common/flags.h"
#include "worker/model_export.h"

namespace {

// The manifest of `dir`: its own MANIFEST.json (a step=S folder), else the newest checkpoint under
// it that verifies (a checkpoint directory).
absl::StatusOr<std::pair<std::string, qsr::CheckpointManifest>> ChooseCheckpoint(
    const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("--checkpoint ", dir, " is not a folder"));
  }
  const std::string own = absl::StrCat(dir, "/", qsr::kManifestName);
  if (std::filesystem::exists(own, ec)) {
    absl::StatusOr<qsr::CheckpointManifest> m = qsr::VerifyCheckpoint(own);
    if (!m.ok()) return m.status();
    return std::make_pair(dir, *std::move(m));
  }
  absl::StatusOr<qsr::ChosenCheckpoint> chosen = qsr::NewestGoodCheckpoint(dir);
  if (!chosen.ok()) return chosen.status();
  for (const std::string& why : chosen->skipped) std::cerr << "qsr-export: skipped " << why << "\n";
  return std::make_pair(std::filesystem::path(chosen->manifest_path).parent_path().string(),
                        chosen->manifest);
}

}  // namespace

int main(int argc, char** argv) {
  qsr::FlagParser flags(
      "qsr-export",
      "qsr-export --checkpoint DIR --out FILE\n"
      "Writes the weights of a committed checkpoint (a step=S folder, or the newest good one under "
      "a checkpoint directory) as a PyTorch state dict: torch.load(FILE) returns {name: tensor}.");
  flags.Add("checkpoint", "", "a step=S folder with MANIFEST.json, or a checkpoint directory");
  flags.Add("out", "", "the state dict file to write (e.g. model.pt)");
  if (std::optional<int> code = flags.ParseForMain(argc, argv)) return *code;
  if (flags.Get("checkpoint").empty() || flags.Get("out").empty()) {
    std::cerr << "qsr-export: --checkpoint and --out are required\n";
    return 2;
  }
  auto chosen = ChooseCheckpoint(flags.Get("checkpoint"));
  if (!chosen.ok()) {
    std::cerr << "qsr-export: " << chosen.status().message() << "\n";
    return 2;
  }
  const auto& [folder, manifest] = *chosen;
  if (manifest.model.empty()) {
    std::cerr << "qsr-export: " << folder << "/" << qsr::kManifestName << " names no model file\n";
    return 2;
  }
  const std::string archive = absl::StrCat(folder, "/", manifest.model);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  try {
    torch::jit::Module m = torch::jit::load(archive, torch::kCPU);
    for (const auto& p : m.named_parameters(/*recurse=*/true))
      tensors.emplace_back(p.name, p.value);
    for (const auto& b : m.named_buffers(/*recurse=*/true)) tensors.emplace_back(b.name, b.value);
  } catch (const std::exception& e) {
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    std::cerr << "qsr-export: cannot read the model archive " << archive << ": " << what << "\n";
    return 2;
  }
  if (tensors.empty()) {
    std::cerr << "qsr-export: " << archive << " holds no tensors\n";
    return 2;
  }
  if (absl::Status s = qsr::SavePyTorchStateDict(tensors, flags.Get("out")); !s.ok()) {
    std::cerr << "qsr-export: " << s.message() << "\n";
    return 2;
  }
  std::cout << "wrote " << flags.Get("out") << ": " << tensors.size() << " tensors from " << archive
            << "\n";
  return 0;
}
