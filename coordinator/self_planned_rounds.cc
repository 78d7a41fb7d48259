#include "coordinator/self_planned_rounds.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

std::string Steps(int64_t start, int64_t h) {
  return absl::StrCat("[", start, ", ", start + h, ")");
}

// A report of a round already recorded with `start` and `h` must cover the same steps.
absl::Status CheckSameSteps(const v1::RoundReport& r, int64_t start, int64_t h, const char* what) {
  if (r.start_step() == start && r.h() == h) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("rounds.start_step/rounds.h: round ", r.round(), " is reported as steps ",
                   Steps(r.start_step(), r.h()), " but was ", what, " as steps ", Steps(start, h),
                   "; allowed: every member reports the same steps for a round"));
}

}  // namespace

absl::Status SelfPlannedRounds::NoteJoin(bool self_planned) {
  const Mode asked = self_planned ? Mode::kSelfPlanned : Mode::kCoordinatorPlanned;
  if (mode_ == Mode::kUndecided) mode_ = asked;
  if (mode_ == asked) return absl::OkStatus();
  return absl::FailedPreconditionError(
      self_planned ? "this run's rounds are planned by the coordinator (its members are "
                     "qsr-worker processes); a member that plans its own rounds (self_planned, "
                     "the qsr library) cannot join it"
                   : "this run's rounds are self-planned (its members are programs on the qsr "
                     "library); a member that asks the coordinator for rounds (qsr-worker) "
                     "cannot join it");
}

absl::Status SelfPlannedRounds::CheckNextRounds() const {
  if (!active()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "NextRounds: this run's members plan their own rounds (JoinRequest.self_planned) and "
      "report them; the coordinator hands out no round plans in it");
}

absl::Status SelfPlannedRounds::Accept(const std::string& worker_id, const v1::RoundReport& r,
                                       int members, RoundLedger& ledger) const {
  if (r.round() < ledger.first_uncommitted()) {
    if (r.round() < ledger.start_round()) {
      return absl::InvalidArgumentError(absl::StrCat("rounds.round is ", r.round(),
                                                     "; allowed: >= ", ledger.start_round(),
                                                     " (this run's first round)"));
    }
    // Committed already: a retried report changes nothing.
    const v1::RoundRecord& done = ledger.committed()[r.round() - ledger.start_round()];
    return CheckSameSteps(r, done.step(), done.h(), "committed");
  }
  if (r.round() < ledger.next_round()) {
    const std::vector<v1::RoundPlan> pending = ledger.PendingFrom(r.round());
    if (pending.empty()) {
      return absl::InternalError(
          absl::StrCat("round ", r.round(), " is neither pending nor committed"));
    }
    if (absl::Status s =
            CheckSameSteps(r, pending.front().start_step(), pending.front().h(), "first reported");
        !s.ok()) {
      return s;
    }
    return ledger.AddRoundReport(worker_id, r, false);
  }
  if (absl::Status s = CheckNewRound(r, ledger); !s.ok()) return s;
  v1::RoundPlan plan;
  plan.set_round(r.round());
  plan.set_start_step(r.start_step());
  plan.set_h(r.h());
  plan.set_lr(r.lr());
  ledger.Serve(plan, members);
  return ledger.AddRoundReport(worker_id, r, false);
}

absl::Status SelfPlannedRounds::CheckNewRound(const v1::RoundReport& r,
                                              const RoundLedger& ledger) const {
  if (r.round() > ledger.next_round()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rounds.round is ", r.round(), " but round ", ledger.next_round(),
                     " was never reported; allowed: ", ledger.next_round(),
                     " (the next round) or a round "
                     "already reported"));
  }
  const bool first = ledger.next_round() == ledger.start_round();
  if (first ? r.start_step() < ledger.next_step() : r.start_step() != ledger.next_step()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rounds.start_step is ", r.start_step(), " for round ", r.round(), ", which would ",
        r.start_step() < ledger.next_step() ? "overlap the rounds before it"
                                            : "leave a gap after the last round",
        "; allowed: ", first ? ">= " : "", ledger.next_step(),
        first ? " (the run's first step)" : " (where the last round ended)"));
  }
  if (total_steps_ > 0 && r.start_step() + r.h() > total_steps_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rounds.h is ", r.h(), " for round ", r.round(), ", steps ", Steps(r.start_step(), r.h()),
        "; allowed: rounds that end at or before the run's total_steps ", total_steps_));
  }
  return absl::OkStatus();
}

}  // namespace qsr
