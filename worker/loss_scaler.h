// The loss scaler of fp16 training (recipe key `precision: fp16`), as the authors' grad_scaler.py
// (KGradScaler) and xmodel.py's update_step use it:
//
//   * the loss of each micro-batch is multiplied by scale() before backward, and the gradients
//     divided by it afterwards;
//   * if any gradient is then inf or NaN, the scale is multiplied by backoff_factor (0.5) and the
//     SAME micro-batch is computed again, up to max_tries (50) times in all; if every try
//     overflows the step fails;
//   * after every optimizer step the step count goes up by one, and every growth_interval (100)
//     steps the scale is multiplied by growth_factor (2).
//
// The difference from torch.cuda.amp.GradScaler: GradScaler never recomputes. On an overflow it
// skips the optimizer step (the step's data is lost to training, and with Local SGD the workers'
// step counts would no longer match the round plan) and halves the scale; it grows the scale
// only after growth_interval consecutive steps without an overflow (an overflow restarts that
// count). Here every planned step is taken, with a gradient computed at a scale that does not
// overflow, at the price of recomputing the micro-batch, and growth is on a fixed period
// regardless of overflows. The scaler is per worker and is not checkpointed (as the authors':
// after a restart it starts again at init_scale).
//
// Pure logic: no torch. The caller supplies the micro-batch computation as a callback.
// Thread-compatible: one scaler per training thread.
#ifndef QSR_WORKER_LOSS_SCALER_H_
#define QSR_WORKER_LOSS_SCALER_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsr {

struct LossScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 100;
  int max_tries = 50;
};

class LossScaler {
 public:
  // REQUIRES (CHECKed, the options are the program's, not the user's): init_scale > 0,
  // growth_factor >= 1, 0 < backoff_factor < 1, growth_interval >= 1, max_tries >= 1.
  explicit LossScaler(const LossScalerOptions& options = {});

  double scale() const { return scale_; }
  int64_t steps() const { return steps_; }
  // Micro-batch computations that overflowed (and were recomputed) since construction.
  int64_t overflows() const { return overflows_; }

  // Computes one micro-batch: calls `compute(scale)`, which must clear the gradients, run
  // forward and backward on loss * scale, divide the gradients by scale, and return whether all
  // of them are finite (or an error, returned as is). On false, backs off the scale and calls it
  // again. Returns the number of calls it took, or RESOURCE_EXHAUSTED if all max_tries
  // overflowed (naming the tries and the last scale).
  absl::StatusOr<int> ComputeMicroBatch(absl::FunctionRef<absl::StatusOr<bool>(double)> compute);

  // After each optimizer step: counts it, and grows the scale every growth_interval steps.
  void OnOptimizerStep();

 private:
  const LossScalerOptions options_;
  double scale_;
  int64_t steps_ = 0;
  int64_t overflows_ = 0;
};

}  // namespace qsr

#endif  // QSR_WORKER_LOSS_SCALER_H_
