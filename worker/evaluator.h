// Evaluation on the test set, and BatchNorm re-estimation before it.
//
// Evaluate: each rank evaluates a disjoint slice of the test set and the sums are all-reduced,
// so every rank computes the same loss and top-1/top-5 accuracy (the models are identical right
// after an averaging round, which is the only time the trainer evaluates).
//
// ReestimateBatchNorm, as the authors' estimate_BN_params: reset every BatchNorm's running
// statistics, run `micro_batches` training micro-batches in training mode without gradients with
// a cumulative-average momentum, restore the momentum. The caller then averages the buffers
// across ranks.
//
// Not thread-safe (uses the model); called from the training thread.
#ifndef QSR_WORKER_EVALUATOR_H_
#define QSR_WORKER_EVALUATOR_H_

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"
#include "worker/data/fashion_mnist.h"
#include "worker/model/models.h"

namespace qsr {

struct EvalResult {
  double loss = 0;  // mean cross-entropy
  double acc1 = 0;  // top-1 accuracy
  double acc5 = 0;  // top-5 accuracy (1 when there are at most 5 classes)
  int64_t examples = 0;
};

absl::StatusOr<EvalResult> Evaluate(Model& model, const Dataset& test, Communicator& comm,
                                    const torch::Device& device, int64_t batch_size);

// Returns the number of BatchNorm layers reset (0: the model has none; nothing ran).
absl::StatusOr<int> ReestimateBatchNorm(Model& model, const Dataset& train,
                                        int64_t micro_batches, int64_t batch_size, uint64_t seed,
                                        const torch::Device& device);

}  // namespace qsr

#endif  // QSR_WORKER_EVALUATOR_H_
