#include "worker/model_export.h"

#include <sstream>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/torch_call.h"

namespace qsr {
namespace {

// Writes `bytes` to a temporary beside `path`, then renames it over `path`.
absl::Status WriteAtomically(const std::string& path, const char* data, size_t size) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
    out.write(data, static_cast<std::streamsize>(size));
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      return absl::DataLossError(absl::StrCat("writing ", tmp, " failed (disk full?)"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return absl::PermissionDeniedError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SavePyTorchStateDict(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                  const std::string& path) {
  std::vector<char> bytes;
  const std::string what = absl::StrCat("exporting ", path);
  absl::Status s = TorchCall(what.c_str(), [&] {
    c10::Dict<std::string, at::Tensor> dict;
    for (const auto& [name, t] : tensors) {
      dict.insert(name, t.detach().to(torch::kCPU).contiguous().clone());
    }
    bytes = torch::jit::pickle_save(c10::IValue(dict));
  });
  if (!s.ok()) return s;
  return WriteAtomically(path, bytes.data(), bytes.size());
}

absl::Status SavePyTorchStateDict(const torch::nn::Module& model, const std::string& path) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : model.named_parameters(/*recurse=*/true))
    tensors.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers(/*recurse=*/true))
    tensors.emplace_back(b.key(), b.value());
  return SavePyTorchStateDict(tensors, path);
}

absl::Status SaveScriptedModule(const TorchScriptModel& model, const std::string& path) {
  std::ostringstream out;
  const std::string what = absl::StrCat("exporting ", path);
  absl::Status s = TorchCall(what.c_str(), [&] {
    // Not Module::deepcopy(): its memo treats tensors that share a storage as one value, and the
    // averager binds every parameter and buffer into one flat storage, so a deep copy would give
    // every tensor the first one's data. A save-and-load round trip keeps each tensor's view.
    std::stringstream original;
    model.script().save(original);
    torch::jit::Module copy = torch::jit::load(original, torch::kCPU);
    copy.eval();
    copy.save(out);
  });
  if (!s.ok()) return s;
  const std::string bytes = out.str();
  return WriteAtomically(path, bytes.data(), bytes.size());
}

}  // namespace qsr
