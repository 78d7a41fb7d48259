#include "worker/model/torchscript_model.h"

#include <torch/version.h>

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

// LibTorch's messages end with a C++ backtrace; the first lines say what happened.
std::string FirstLines(const std::string& what) {
  std::string out = what;
  if (const size_t cut = out.find("\nException raised from"); cut != std::string::npos) {
    out.resize(cut);
  }
  return out;
}

// A scripted BatchNorm's momentum: a TorchScript constant (torch.jit.script keeps
// __constants__), else an attribute (some traced modules).
absl::StatusOr<std::optional<double>> MomentumOf(const torch::jit::Module& m,
                                                 const std::string& name) {
  c10::IValue value;
  const c10::ClassTypePtr type = m.type();
  if (type->hasConstant("momentum")) {
    value = type->getConstant("momentum");
  } else if (m.hasattr("momentum")) {
    value = m.attr("momentum");
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "BatchNorm ", name, " has no readable momentum (script the model with torch.jit.script)"));
  }
  if (value.isNone()) return std::optional<double>();
  if (value.isDouble()) return std::optional<double>(value.toDouble());
  if (value.isInt()) return std::optional<double>(static_cast<double>(value.toInt()));
  return absl::InvalidArgumentError(
      absl::StrCat("BatchNorm ", name, " has a momentum of type ", value.tagKind()));
}

bool IsBatchNorm(const torch::jit::Module& m) {
  const auto& name = m.type()->name();
  // "__torch__.torch.nn.modules.batchnorm.BatchNorm2d", or with a mangled namespace
  // ("...batchnorm.___torch_mangle_3.BatchNorm2d") when layers of one class differ in constants.
  return name.has_value() &&
         absl::StrContains(name->qualifiedName(), "torch.nn.modules.batchnorm.") &&
         absl::StartsWith(name->name(), "BatchNorm");
}

// Registers `src`'s own parameters and buffers on `dst` (the same tensors) and mirrors its
// children, collecting BatchNorm layers on the way.
absl::Status Mirror(const torch::jit::Module& src, torch::nn::Module& dst,
                    const std::string& prefix, std::vector<ScriptedBatchNorm>& batch_norms) {
  for (const auto& p : src.named_parameters(/*recurse=*/false)) {
    dst.register_parameter(p.name, p.value, p.value.requires_grad());
  }
  for (const auto& b : src.named_buffers(/*recurse=*/false)) dst.register_buffer(b.name, b.value);
  if (IsBatchNorm(src) && src.hasattr("running_mean") && src.hasattr("running_var")) {
    const c10::IValue mean = src.attr("running_mean");
    const c10::IValue var = src.attr("running_var");
    if (mean.isTensor() && var.isTensor()) {  // None when track_running_stats=False
      ScriptedBatchNorm bn;
      bn.name = prefix.empty() ? "(the model)" : prefix;
      bn.running_mean = mean.toTensor();
      bn.running_var = var.toTensor();
      if (src.hasattr("num_batches_tracked") && src.attr("num_batches_tracked").isTensor()) {
        bn.num_batches_tracked = src.attr("num_batches_tracked").toTensor();
      }
      absl::StatusOr<std::optional<double>> momentum = MomentumOf(src, bn.name);
      if (!momentum.ok()) return momentum.status();
      bn.momentum = *momentum;
      batch_norms.push_back(std::move(bn));
    }
  }
  for (const auto& child : src.named_children()) {
    auto mirror = std::make_shared<torch::nn::Module>(child.name);
    if (absl::Status s = Mirror(child.value, *mirror,
                                prefix.empty() ? child.name : absl::StrCat(prefix, ".", child.name),
                                batch_norms);
        !s.ok()) {
      return s;
    }
    dst.register_module(child.name, mirror);
  }
  return absl::OkStatus();
}

}  // namespace

TorchScriptModel::TorchScriptModel(torch::jit::Module module, std::string path)
    : Model("TorchScriptModel"), module_(std::move(module)), path_(std::move(path)) {}

absl::StatusOr<std::shared_ptr<TorchScriptModel>> TorchScriptModel::Load(const std::string& path) {
  std::error_code ec;
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "model torchscript needs model_path (the recipe key, or the worker's --model-path): the "
        "file torch.jit.save wrote");
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model_path ", path, " does not exist or is not a file"));
  }
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    const std::string what = FirstLines(e.what());
    if (absl::StrContains(what, "maximum supported version") ||
        absl::StrContains(what, "too old")) {
      return absl::InvalidArgumentError(
          absl::StrCat("model_path ", path, " was saved by a newer PyTorch than this LibTorch (",
                       TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR,
                       ") reads; script and save it with PyTorch ", TORCH_VERSION_MAJOR, ".",
                       TORCH_VERSION_MINOR, " or older (", what, ")"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "model_path ", path,
        " is not a TorchScript archive (write one with torch.jit.script(model).save(path) or "
        "torch.jit.trace(model, example).save(path); torch.save of a model or state dict is not "
        "one): ",
        what));
  }
  auto model = std::shared_ptr<TorchScriptModel>(new TorchScriptModel(std::move(module), path));
  if (absl::Status s = Mirror(model->module_, *model, "", model->batch_norms_); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model_path ", path, ": ", s.message()));
  }
  if (model->parameters().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model_path ", path, " has no parameters: nothing to train"));
  }
  if (!model->module_.find_method("forward").has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("model_path ", path, " has no forward method"));
  }
  model->train(true);
  return model;
}

torch::Tensor TorchScriptModel::forward(torch::Tensor x) {
  return module_.forward({std::move(x)}).toTensor();
}

void TorchScriptModel::train(bool on) {
  torch::nn::Module::train(on);
  module_.train(on);
}

absl::Status CheckScriptedOutput(TorchScriptModel& model, const torch::Tensor& examples,
                                 int64_t num_classes) {
  std::string problem;
  try {
    torch::NoGradGuard no_grad;
    model.eval();
    const c10::IValue out = model.script().get_method("forward")({examples});
    if (!out.isTensor()) {
      problem = absl::StrCat("forward returned a ", out.tagKind(), ", not a tensor");
    } else {
      const torch::Tensor t = out.toTensor();
      if (t.dim() != 2 || t.size(0) != examples.size(0) || t.size(1) != num_classes) {
        problem =
            absl::StrCat("forward maps a batch of shape ", c10::Join(", ", examples.sizes()),
                         " to shape [", c10::Join(", ", t.sizes()), "]; want [", examples.size(0),
                         ", ", num_classes, "] (batch, the data's ", num_classes, " classes)");
      } else if (!t.is_floating_point()) {
        problem = absl::StrCat("forward returns ", std::string(t.dtype().name()),
                               " logits; want floating point");
      }
    }
  } catch (const std::exception& e) {
    problem = absl::StrCat("forward fails on a batch of shape [", c10::Join(", ", examples.sizes()),
                           "]: ", FirstLines(e.what()));
  }
  model.train(true);
  if (!problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("model_path ", model.path(), ": ", problem));
  }
  return absl::OkStatus();
}

}  // namespace qsr
