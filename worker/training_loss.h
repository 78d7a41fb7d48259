// The training step's loss on one micro-batch: cross-entropy with label smoothing, and with
// mixup when mixup_alpha > 0 (the authors' ViT runs):
//   (x', y_a, y_b, lambda) = Mixup(x, y, alpha, seed)
//   loss = lambda * CE(model(x'), y_a) + (1 - lambda) * CE(model(x'), y_b)
// `seed` makes the mix a pure function of the micro-batch's place in the run: MixupSeed().
//
// Not thread-safe (runs the model); throws c10::Error like any LibTorch call (call inside
// TorchCall), and std::invalid_argument for a bad mixup.
#ifndef QSR_WORKER_TRAINING_LOSS_H_
#define QSR_WORKER_TRAINING_LOSS_H_

#include <torch/torch.h>

#include <cstdint>

#include "worker/model/models.h"

namespace qsr {

struct LossOptions {
  double label_smoothing = 0.0;
  double mixup_alpha = 0.0;  // 0 = no mixup
};

// The mix seed of micro-batch `micro` (of `micro_batches`) of `rank` at global step `step`.
uint64_t MixupSeed(uint64_t run_seed, int64_t step, int rank, int64_t micro_batches, int64_t micro);

// The seed of LibTorch's default generator for `rank`'s training step `step`: the model's own
// randomness (dropout, stochastic depth in a TorchScript module) is drawn from it. Seeding it at
// every step makes that randomness a function of the step, so a run resumed from a checkpoint
// draws the same masks as the uninterrupted run, with no generator state to save.
uint64_t ModelRngSeed(uint64_t run_seed, int64_t step, int rank);

// The mean loss of the micro-batch (x, y on the model's device).
torch::Tensor TrainingLoss(Model& model, const torch::Tensor& x, const torch::Tensor& y,
                           const LossOptions& options, uint64_t mix_seed);

}  // namespace qsr

#endif  // QSR_WORKER_TRAINING_LOSS_H_
