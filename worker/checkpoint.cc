#include "worker/checkpoint.h"

#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "worker/torch_call.h"

namespace qsr {
namespace {

// Runs `write(tmp)` then renames tmp to `path`.
template <typename Write>
absl::Status WriteAtomically(const std::string& path, Write&& write) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot create ", parent.string(), ": ", ec.message()));
  const std::string tmp = path + ".tmp";
  absl::Status s = TorchCall(("cannot write checkpoint " + path).c_str(), [&] { write(tmp); },
                             absl::StatusCode::kUnavailable);
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return s;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

template <typename Read>
absl::Status ReadArchive(const std::string& path, Read&& read) {
  if (!std::filesystem::exists(path)) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", path, " does not exist"));
  }
  const std::string what = "checkpoint " + path + " is corrupt or does not fit this model";
  return TorchCall(
      what.c_str(),
      [&] {
        torch::serialize::InputArchive archive;
        archive.load_from(path);
        read(archive);
      },
      absl::StatusCode::kDataLoss);
}

// Saves what has save(OutputArchive&) (a module, an optimizer) to `path`, atomically.
template <typename Saveable>
absl::Status SaveArchive(const Saveable& saveable, const std::string& path) {
  return WriteAtomically(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    saveable.save(archive);
    archive.save_to(tmp);
  });
}

// Loads what has load(InputArchive&) (a module, an optimizer) from `path`.
template <typename Loadable>
absl::Status LoadArchive(Loadable& loadable, const std::string& path) {
  return ReadArchive(path, [&](torch::serialize::InputArchive& a) { loadable.load(a); });
}

}  // namespace

std::string ModelCheckpointName(int64_t step, int64_t epoch) {
  return absl::StrCat("model_step=", step, "-epoch=", epoch, ".pt");
}

std::string OptimizerCheckpointName(int64_t step, int64_t epoch) {
  return absl::StrCat("opt_step=", step, "-epoch=", epoch);
}

absl::Status SaveModule(const torch::nn::Module& module, const std::string& path) {
  return SaveArchive(module, path);
}

absl::Status LoadModule(torch::nn::Module& module, const std::string& path) {
  return LoadArchive(module, path);
}

absl::Status SaveOptimizer(const torch::optim::Optimizer& optimizer, const std::string& path) {
  return SaveArchive(optimizer, path);
}

absl::Status LoadOptimizer(torch::optim::Optimizer& optimizer, const std::string& path) {
  return LoadArchive(optimizer, path);
}

}  // namespace qsr
