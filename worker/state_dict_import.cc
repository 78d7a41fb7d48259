#include "worker/state_dict_import.h"

#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/checkpoint.h"
#include "worker/torch_call.h"

namespace qsr {
namespace {

using TensorMap = std::map<std::string, torch::Tensor>;

std::string FirstFew(const std::vector<std::string>& names) {
  std::vector<std::string> shown(names.begin(), names.begin() + std::min<size_t>(5, names.size()));
  std::string text = absl::StrJoin(shown, ", ");
  if (names.size() > shown.size())
    absl::StrAppend(&text, " and ", names.size() - shown.size(), " more");
  return text;
}

// Copies `from` into the module's parameters and buffers, strictly.
absl::Status CopyByName(torch::nn::Module& module, TensorMap from, const std::string& path) {
  for (auto it = from.begin(); it != from.end();) {
    if (absl::StartsWith(it->first, "module.")) {
      from.emplace(it->first.substr(7), it->second);
      it = from.erase(it);
    } else {
      ++it;
    }
  }
  TensorMap to;
  for (const auto& p : module.named_parameters()) to.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers()) to.emplace(b.key(), b.value());
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, tensor] : to) {
    auto it = from.find(name);
    if (it == from.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != tensor.sizes()) {
      mismatched.push_back(absl::StrCat(name, " (file ", c10::str(it->second.sizes()), ", model ",
                                        c10::str(tensor.sizes()), ")"));
    }
  }
  for (const auto& entry : from) {
    if (to.count(entry.first) == 0) unexpected.push_back(entry.first);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::vector<std::string> parts;
    if (!missing.empty()) parts.push_back("missing " + FirstFew(missing));
    if (!unexpected.empty()) parts.push_back("unexpected " + FirstFew(unexpected));
    if (!mismatched.empty()) parts.push_back("shape mismatch " + FirstFew(mismatched));
    return absl::InvalidArgumentError(absl::StrCat(
        "init_model_path ", path, " does not fit this model: ", absl::StrJoin(parts, "; ")));
  }
  return TorchCall(("init_model_path " + path).c_str(), [&] {
    torch::NoGradGuard no_grad;
    for (auto& [name, tensor] : to) tensor.copy_(from.at(name));
  });
}

absl::StatusOr<TensorMap> ReadPickledStateDict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TensorMap out;
  absl::Status s = TorchCall("torch.save state_dict", [&] {
    c10::IValue value;
    try {
      value = torch::pickle_load(bytes);
    } catch (const c10::Error& e) {
      // pickle_load itself asserts on the None that an OrderedDict became.
      if (std::string(e.what()).find("but got None") == std::string::npos) throw;
      value = c10::IValue();
    }
    if (value.isNone()) {
      // LibTorch's unpickler turns every collections.OrderedDict into None.
      throw std::runtime_error(
          "it holds an OrderedDict (what model.state_dict() returns), which LibTorch cannot "
          "unpickle; save dict(model.state_dict()) instead");
    }
    if (!value.isGenericDict()) throw std::runtime_error("not a dict of tensors");
    for (const auto& entry : value.toGenericDict()) {
      if (!entry.key().isString() || !entry.value().isTensor()) {
        throw std::runtime_error("not a dict of name -> tensor (a pickled module or optimizer?)");
      }
      out.emplace(entry.key().toStringRef(), entry.value().toTensor());
    }
  });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<TensorMap> ReadTorchScript(const std::string& path) {
  TensorMap out;
  absl::Status s = TorchCall("TorchScript module", [&] {
    torch::jit::Module m = torch::jit::load(path, torch::kCPU);
    for (const auto& p : m.named_parameters(/*recurse=*/true)) out.emplace(p.name, p.value);
    for (const auto& b : m.named_buffers(/*recurse=*/true)) out.emplace(b.name, b.value);
  });
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::Status LoadInitialWeights(torch::nn::Module& module, const std::string& path) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("init_model_path ", path, " does not exist"));
  }
  absl::Status archive = LoadModule(module, path);
  if (archive.ok()) return archive;
  absl::StatusOr<TensorMap> pickled = ReadPickledStateDict(path);
  if (pickled.ok()) return CopyByName(module, *std::move(pickled), path);
  absl::StatusOr<TensorMap> script = ReadTorchScript(path);
  if (script.ok()) return CopyByName(module, *std::move(script), path);
  return absl::InvalidArgumentError(absl::StrCat(
      "init_model_path ", path,
      " is neither a LibTorch archive, a torch.save'd dict of tensors (zip format, PyTorch >= "
      "1.6) nor a TorchScript module; save it with torch.save(dict(model.state_dict()), path) or "
      "torch.jit.save(torch.jit.script(model), path). As a dict: ",
      pickled.status().message(), "; as TorchScript: ", script.status().message()));
}

}  // namespace qsr
