#include "worker/loss_scaler.h"

#include <glog/logging.h>

#include "absl/strings/str_cat.h"

namespace qsr {

LossScaler::LossScaler(const LossScalerOptions& options)
    : options_(options), scale_(options.init_scale) {
  CHECK_GT(options_.init_scale, 0);
  CHECK_GE(options_.growth_factor, 1);
  CHECK(options_.backoff_factor > 0 && options_.backoff_factor < 1);
  CHECK_GE(options_.growth_interval, 1);
  CHECK_GE(options_.max_tries, 1);
}

absl::StatusOr<int> LossScaler::ComputeMicroBatch(
    absl::FunctionRef<absl::StatusOr<bool>(double)> compute) {
  for (int attempt = 1; attempt <= options_.max_tries; ++attempt) {
    absl::StatusOr<bool> finite = compute(scale_);
    if (!finite.ok()) return finite.status();
    if (*finite) return attempt;
    // As grad_scaler.py: the scale shrinks on each overflow, and the same micro-batch is
    // computed again at the smaller scale.
    scale_ *= options_.backoff_factor;
    ++overflows_;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("fp16 loss scaling: the gradients stayed inf/NaN in all ", options_.max_tries,
                   " tries of one micro-batch (scale backed off to ", scale_,
                   "); the loss itself is probably inf/NaN: lower the learning rate or use "
                   "precision: fp32 or bf16"));
}

void LossScaler::OnOptimizerStep() {
  ++steps_;
  if (steps_ % options_.growth_interval == 0) scale_ *= options_.growth_factor;
}

}  // namespace qsr
