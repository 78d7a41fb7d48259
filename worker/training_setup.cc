#include "worker/training_setup.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "worker/checkpoint.h"
#include "worker/data/datasets.h"
#include "worker/model/torchscript_model.h"
#include "worker/state_dict_import.h"

namespace qsr {

absl::StatusOr<TrainingData> OpenTrainingData(const Recipe& recipe, const std::string& data_dir) {
  DataOptions options;
  options.image_size = recipe.image_size;
  if (recipe.strong_aug) {
    // RandAugment on the training images only (the authors' --strong-aug).
    options.rand_augment = RandAugmentOptions{static_cast<int>(recipe.rand_aug_severity),
                                              static_cast<int>(recipe.rand_aug_depth)};
  }
  absl::StatusOr<std::shared_ptr<const DataSource>> train =
      OpenDataset(recipe.dataset, data_dir, options);
  if (!train.ok()) return train.status();
  options.train = false;
  options.augment = false;
  options.rand_augment.reset();
  absl::StatusOr<std::shared_ptr<const DataSource>> test =
      OpenDataset(recipe.dataset, data_dir, options);
  if (!test.ok()) return test.status();
  LOG(INFO) << "data: " << (*train)->Describe() << "; " << (*test)->Describe();
  return TrainingData{*train, *test};
}

absl::StatusOr<std::shared_ptr<Model>> BuildModel(const Recipe& recipe, const DataSource& train,
                                                  const std::string& model_path) {
  // The model's input follows the data: 1x28x28 for Fashion-MNIST, 3x32x32 for CIFAR,
  // 3 x image_size x image_size for folders.
  const std::vector<int64_t> shape = train.example_shape();
  if (shape.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat("dataset ", recipe.dataset, " has ",
                                                   shape.size(), "-d examples; want C x H x W"));
  }
  if (recipe.model != "torchscript") {
    return MakeModel(recipe.model, train.num_classes(), ModelInput{shape[0], shape[1], shape[2]});
  }
  absl::StatusOr<std::shared_ptr<TorchScriptModel>> scripted = TorchScriptModel::Load(model_path);
  if (!scripted.ok()) return scripted.status();
  if (absl::Status s = CheckScriptedOutput(
          **scripted, torch::zeros({2, shape[0], shape[1], shape[2]}), train.num_classes());
      !s.ok()) {
    return s;
  }
  return std::shared_ptr<Model>(*scripted);
}

absl::Status LoadInitialState(const Recipe& recipe, int rank, torch::nn::Module& model,
                              torch::optim::Optimizer& optimizer) {
  // Identical starting weights on every worker come from the seed, or from one file.
  if (recipe.init_model_by_seed == -1) {
    if (absl::Status s = LoadInitialWeights(model, recipe.init_model_path); !s.ok()) return s;
  }
  if (!recipe.resume_pth.empty()) {
    if (absl::Status s = LoadModule(model, recipe.resume_pth); !s.ok()) return s;
  }
  if (!recipe.optimizer_resume_pth.empty()) {
    // A folder holds each rank's state (local methods), a file the one shared state.
    std::error_code ec;
    const std::string path = std::filesystem::is_directory(recipe.optimizer_resume_pth, ec)
                                 ? absl::StrCat(recipe.optimizer_resume_pth, "/rank=", rank, ".pt")
                                 : recipe.optimizer_resume_pth;
    if (absl::Status s = LoadOptimizer(optimizer, path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace qsr
