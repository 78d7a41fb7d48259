#include "worker/training_loss.h"

#include <stdexcept>
#include <string>

#include "worker/data/mixup.h"
#include "worker/data/sampler.h"

namespace qsr {

uint64_t MixupSeed(uint64_t run_seed, int64_t step, int rank, int64_t micro_batches,
                   int64_t micro) {
  // A different stream from the examples' augmentation keys, which use the same (seed, step).
  constexpr uint64_t kMixupStream = 0x6d69787570ULL;  // "mixup"
  return ExampleKey(run_seed ^ kMixupStream, step, rank * micro_batches + micro);
}

uint64_t ModelRngSeed(uint64_t run_seed, int64_t step, int rank) {
  constexpr uint64_t kModelStream = 0x6d6f64656cULL;  // "model"
  return ExampleKey(run_seed ^ kModelStream, step, rank);
}

torch::Tensor TrainingLoss(Model& model, const torch::Tensor& x, const torch::Tensor& y,
                           const LossOptions& options, uint64_t mix_seed) {
  const auto ce =
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(options.label_smoothing);
  if (options.mixup_alpha <= 0) {
    return torch::nn::functional::cross_entropy(model.forward(x), y, ce);
  }
  absl::StatusOr<MixupBatch> mixed = Mixup(x, y, options.mixup_alpha, mix_seed);
  if (!mixed.ok()) throw std::invalid_argument(std::string(mixed.status().message()));
  const torch::Tensor logits = model.forward(mixed->x);
  return torch::nn::functional::cross_entropy(logits, mixed->y_a, ce) * mixed->lambda +
         torch::nn::functional::cross_entropy(logits, mixed->y_b, ce) * (1.0 - mixed->lambda);
}

}  // namespace qsr
