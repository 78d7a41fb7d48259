// Model and optimizer checkpoints in LibTorch's archive format.
//
// Layout under a checkpoint directory, as the authors' save_step:
//   model_step=S-epoch=E.pt                 the (averaged) model, written by rank 0
//   opt_step=S-epoch=E.pt                   one optimizer state (data-parallel, or rank 0's)
//   opt_step=S-epoch=E/rank=R.pt            each rank's own state (multiple_optimizers)
// Files are written to a temporary name and renamed, so a reader never sees a partial file.
// Every error names the file.
#ifndef QSR_WORKER_CHECKPOINT_H_
#define QSR_WORKER_CHECKPOINT_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"

namespace qsr {

std::string ModelCheckpointName(int64_t step, int64_t epoch);
std::string OptimizerCheckpointName(int64_t step, int64_t epoch);  // without ".pt"

absl::Status SaveModule(const torch::nn::Module& module, const std::string& path);
absl::Status LoadModule(torch::nn::Module& module, const std::string& path);
absl::Status SaveOptimizer(const torch::optim::Optimizer& optimizer, const std::string& path);
absl::Status LoadOptimizer(torch::optim::Optimizer& optimizer, const std::string& path);

}  // namespace qsr

#endif  // QSR_WORKER_CHECKPOINT_H_
