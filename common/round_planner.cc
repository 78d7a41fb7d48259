#include "common/round_planner.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace qsr {

RoundPlanner::RoundPlanner(const Recipe& recipe)
    : schedule_(recipe),
      rule_(SyncRuleParams::FromRecipe(recipe)),
      total_steps_(recipe.TotalSteps()) {}

std::optional<Round> RoundPlanner::RoundAt(int64_t index, int64_t start_step) const {
  if (start_step < 0 || start_step >= total_steps_) return std::nullopt;
  Round round;
  round.index = index;
  round.start_step = start_step;
  round.lr = schedule_.At(start_step);
  // The run may end before the schedule does (epochs < epochs_for_sche): cut the last round there.
  round.h = std::min(SyncPeriod(rule_, start_step, round.lr), total_steps_ - start_step);
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

}  // namespace qsr
