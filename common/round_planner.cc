#include "common/round_planner.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"

namespace qsr {

RoundPlanner::RoundPlanner(const Recipe& recipe)
    : schedule_(recipe),
      rule_(SyncRuleParams::FromRecipe(recipe)),
      total_steps_(recipe.TotalSteps()),
      steps_per_epoch_(recipe.steps_per_epoch),
      save_freq_(recipe.save_freq) {}

std::optional<Round> RoundPlanner::RoundAt(int64_t index, int64_t start_step) const {
  if (start_step < 0 || start_step >= total_steps_) return std::nullopt;
  Round round;
  round.index = index;
  round.start_step = start_step;
  round.lr = schedule_.At(start_step);
  // The run may end before the schedule does (epochs < epochs_for_sche): cut the last round there.
  round.h = std::min(SyncPeriod(rule_, start_step, round.lr), total_steps_ - start_step);
  round.data_parallel = rule_.data_parallel || start_step < rule_.post_local_step;
  const int64_t spe = std::max<int64_t>(steps_per_epoch_, 1);
  const int64_t end = round.end_step();
  const bool ends_run = end == total_steps_;
  round.eval_after = ends_run || end / spe != start_step / spe;
  round.checkpoint_after =
      save_freq_ > 0 && (ends_run || end / spe / save_freq_ > start_step / spe / save_freq_);
  return round;
}

std::vector<Round> RoundPlanner::Plan() const {
  std::vector<Round> rounds;
  if (rule_.data_parallel) rounds.reserve(static_cast<size_t>(total_steps_));
  int64_t start = 0;
  for (int64_t index = 0;; ++index) {
    std::optional<Round> round = RoundAt(index, start);
    if (!round.has_value()) break;
    start = round->end_step();
    rounds.push_back(*round);
  }
  return rounds;
}

int64_t RoundPlanner::FirstRoundFrom(int64_t step) const {
  int64_t index = 0;
  for (int64_t start = 0;; ++index) {
    std::optional<Round> round = RoundAt(index, start);
    if (!round.has_value() || round->start_step >= step) return index;
    start = round->end_step();
  }
}

PlanSummary RoundPlanner::Summarize(const std::vector<Round>& rounds) {
  PlanSummary s;
  s.rounds = static_cast<int64_t>(rounds.size());
  for (const Round& round : rounds) {
    s.total_steps += round.h;
    s.max_h = std::max(s.max_h, round.h);
  }
  if (s.rounds > 0) s.mean_h = static_cast<double>(s.total_steps) / static_cast<double>(s.rounds);
  if (s.total_steps > 0) {
    s.sync_share = static_cast<double>(s.rounds) / static_cast<double>(s.total_steps);
  }
  return s;
}

namespace {

double SyncShare(Recipe recipe, double alpha) {
  recipe.alpha = alpha;
  return RoundPlanner::Summarize(RoundPlanner(recipe).Plan()).sync_share;
}

}  // namespace

absl::StatusOr<double> AlphaForSyncBudget(const Recipe& recipe, double budget) {
  if (!(budget > 0 && budget <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("sync budget ", budget, " must be in (0, 1]"));
  }
  if (SyncShare(recipe, 0.0) <= budget) return 0.0;  // constant init_h already fits
  // Grow the upper end until it fits; past the largest LR every H is capped by T - t.
  double hi = 1e-6;
  while (SyncShare(recipe, hi) > budget) {
    if (hi > 1e9) {
      return absl::InvalidArgumentError(
          absl::StrCat("sync_budget ", budget, " cannot be met: even the longest rounds sync ",
                       SyncShare(recipe, hi), " of steps (warmup with init_h ", recipe.init_h,
                       " and min_h ", recipe.min_h, " set the floor)"));
    }
    hi *= 4;
  }
  double lo = hi / 4 > 1e-6 ? hi / 4 : 0.0;
  for (int i = 0; i < 60 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    (SyncShare(recipe, mid) <= budget ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace qsr
