#include "common/lr_schedule.h"

#include <cmath>
#include <cstdint>

namespace qsr {
namespace {
// math.pi, as the authors' Python uses; kPi is not standard C++.
constexpr double kPi = 3.14159265358979323846;
}  // namespace

LrSchedule::LrSchedule(const Recipe& recipe) : recipe_(recipe) {}

double LrSchedule::At(int64_t step) const {
  const Recipe& r = recipe_;
  const double t = static_cast<double>(step);
  const int64_t warmup = r.warmup_steps;
  if (step < warmup) return r.min_lr + (r.max_lr - r.min_lr) * t / static_cast<double>(warmup);

  if (r.scheduler == "step") {
    // Decay points are epochs; a point takes effect at its first step.
    double lr = r.max_lr;
    for (double point : r.decay_points) {
      if (t >= point * static_cast<double>(r.steps_per_epoch)) lr *= r.gamma;
    }
    return lr;
  }
  if (r.scheduler != "cosine" && r.scheduler != "linear" && r.scheduler != "cosine_step") {
    return r.max_lr;  // constant
  }

  const int64_t total = r.ScheduleSteps();
  // All of the schedule is warmup: there is no decay span to divide by.
  if (total <= warmup) return r.max_lr;
  double progress = (t - static_cast<double>(warmup)) / static_cast<double>(total - warmup);
  if (progress > 1.0) progress = 1.0;  // past T the LR stays at min_lr
  const double cosine = r.min_lr + 0.5 * (r.max_lr - r.min_lr) * (1.0 + std::cos(kPi * progress));
  if (r.scheduler == "cosine") return cosine;
  if (r.scheduler == "cosine_step") {
    // The cosine value rounded to the nearest power of `base` (in log space), as the authors'
    // cosine_step does; 0 stays 0.
    if (cosine <= 0) return 0.0;
    return std::pow(r.base, std::round(std::log(cosine) / std::log(r.base)));
  }
  return r.max_lr - (r.max_lr - r.min_lr) * progress;
}

}  // namespace qsr
