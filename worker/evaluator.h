// Evaluation on the test set, and BatchNorm re-estimation before it.
//
// Both stream their examples from a DataSource through a BatchLoader with `num_workers` decode
// threads, so a JPEG folder (ImageNet's 50,000 validation images) is never held in memory.
//
// Evaluate: each rank evaluates a disjoint contiguous slice of the test set (a sequential
// loader: resize + centre crop for folders) and the sums are all-reduced, so every rank computes
// the same loss and top-1/top-5 accuracy (the models are identical right after an averaging
// round, which is the only time the trainer evaluates).
//
// ReestimateBatchNorm, as the authors' estimate_BN_params: reset every BatchNorm's running
// statistics, run `micro_batches` training micro-batches (this rank's shard of a permutation
// drawn from `seed`, with the source's augmentation) in training mode without gradients with a
// cumulative-average momentum, restore the momentum. The caller then averages the buffers
// across ranks.
//
// Not thread-safe (uses the model); called from the training thread.
#ifndef QSR_WORKER_EVALUATOR_H_
#define QSR_WORKER_EVALUATOR_H_

#include <torch/torch.h>

#include <functional>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/data/data_source.h"
#include "worker/model/models.h"
#include "worker/model/torchscript_model.h"

namespace qsr {

struct EvalResult {
  double loss = 0;  // mean cross-entropy
  double acc1 = 0;  // top-1 accuracy
  double acc5 = 0;  // top-5 accuracy (1 when there are at most 5 classes)
  int64_t examples = 0;
};

absl::StatusOr<EvalResult> Evaluate(Model& model, std::shared_ptr<const DataSource> test,
                                    Communicator& comm, const torch::Device& device,
                                    int64_t batch_size, int num_workers = 1);

// Scripted BatchNorm (TorchScriptModel) keeps momentum as a constant, so the cumulative average
// is computed here instead: before each batch the running statistics are zeroed (and
// num_batches_tracked), one forward in training mode leaves m * (the batch's statistics) in them
// (m = momentum, or 1 for None since the reset counter makes PyTorch's factor 1/1), and their mean
// over the batches is written back with num_batches_tracked = the number of batches: what
// momentum=None gives. `next_batch` yields each input batch; `batches` of them are used.
absl::StatusOr<int> ReestimateScriptedBatchNorm(
    TorchScriptModel& model, const std::function<absl::StatusOr<torch::Tensor>()>& next_batch,
    int64_t batches);

// Returns the number of BatchNorm layers reset (0: the model has none; nothing ran).
absl::StatusOr<int> ReestimateBatchNorm(Model& model, std::shared_ptr<const DataSource> train,
                                        int64_t micro_batches, int64_t batch_size, uint64_t seed,
                                        int rank, int world, const torch::Device& device,
                                        int num_workers = 1);

}  // namespace qsr

#endif  // QSR_WORKER_EVALUATOR_H_
