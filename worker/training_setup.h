// What a worker builds once per process from the run's recipe: the training and test data, the
// model (checked against the data's shape) and the state it starts from.
//
// Stateless functions; nothing throws (LibTorch errors come back as a Status).
#ifndef QSR_WORKER_TRAINING_SETUP_H_
#define QSR_WORKER_TRAINING_SETUP_H_

#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/recipe.h"
#include "worker/data/data_source.h"
#include "worker/model/models.h"

namespace qsr {

struct TrainingData {
  // The training split with the dataset's augmentation (CIFAR: crop + flip; folders:
  // RandomResizedCrop + flip; with strong_aug then RandAugment); the test split without (folders:
  // resize + centre crop).
  std::shared_ptr<const DataSource> train;
  std::shared_ptr<const DataSource> test;
};

// Opens the recipe's dataset in `data_dir` (empty: the dataset's default).
absl::StatusOr<TrainingData> OpenTrainingData(const Recipe& recipe, const std::string& data_dir);

// The recipe's model for `train`'s examples (C x H x W) and classes, on the CPU. A TorchScript
// model is loaded from `model_path` and checked on a small batch of the data's shape, so that a
// model that does not fit the data fails here, before any training.
absl::StatusOr<std::shared_ptr<Model>> BuildModel(const Recipe& recipe, const DataSource& train,
                                                  const std::string& model_path);

// The state every member starts from: init_model_path's weights (init_model_by_seed -1), then
// resume_pth's model and optimizer_resume_pth's optimizer state (a folder holds each rank's
// state: `rank`'s is loaded).
absl::Status LoadInitialState(const Recipe& recipe, int rank, torch::nn::Module& model,
                              torch::optim::Optimizer& optimizer);

}  // namespace qsr

#endif  // QSR_WORKER_TRAINING_SETUP_H_
