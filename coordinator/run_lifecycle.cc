#include "coordinator/run_lifecycle.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/outcome.h"
#include "glog/logging.h"

namespace qsr {
namespace {

// The message of a run whose workers met through the coordinator but trained their own rounds.
constexpr char kRendezvousOnly[] =
    "the workers used the coordinator for rendezvous only and trained their own rounds";

}  // namespace

RunLifecycle::RunLifecycle(std::string run_id, absl::Time started, Parts parts,
                           Admission::MemberReply member_reply)
    : run_id_(std::move(run_id)),
      started_(started),
      parts_(parts),
      member_reply_(std::move(member_reply)) {}

void RunLifecycle::Start(const Journal::Recovered& r, const std::string& recipe_yaml,
                         absl::Time now) {
  RoundLedger& ledger = *parts_.ledger;
  if (!r.exists) {
    v1::JournalEntry e;
    e.mutable_started()->set_run_id(run_id_);
    e.mutable_started()->set_recipe_yaml(recipe_yaml);
    ledger.Record(e);
    return;
  }
  ledger.Recover(r);
  if (r.ended) {
    state_ = r.end.state() == "FAILED" ? State::kFailed : State::kFinished;
    message_ = r.end.message();
    ended_ = now;
  } else if (r.generation > 0) {
    state_ = State::kRunning;
    parts_.membership->Recover(r.generation, r.members, now);
  }
  LOG(INFO) << "recovered run " << r.run_id << " from " << ledger.journal_path() << ": "
            << ledger.committed().size() << " rounds committed, " << ledger.pending_count()
            << " in flight, generation " << r.generation << " (" << StateName() << ")";
}

const char* RunLifecycle::StateName() const {
  switch (state_) {
    case State::kWaiting:
      return "WAITING";
    case State::kRunning:
      return parts_.membership->forming() ? "REGROUPING" : "RUNNING";
    case State::kFinished:
      return "FINISHED";
    case State::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

void RunLifecycle::MaybeForm(absl::Time now, std::vector<Completion>* completions) {
  if (ended()) return;
  Membership& membership = *parts_.membership;
  if (!membership.TryForm(now)) {
    if (std::optional<std::string> why = membership.Unformable(now)) {
      if (EveryRoundCommitted()) {
        // Nobody is coming back because the members trained the rest of the plan on the rounds
        // they had been served and left (across a coordinator restart, say): nothing is missing.
        plan_exhausted_ = true;
        Finish(completions);
        return;
      }
      ++failures_;
      Fail(*why, completions);
    }
    return;
  }
  if (membership.generation() > 1 && !Resume(completions)) return;
  state_ = State::kRunning;
  v1::JournalEntry e;
  e.mutable_generation()->set_generation(membership.generation());
  for (const Membership::Member& m : membership.members()) {
    e.mutable_generation()->add_members(m.worker_id);
  }
  parts_.ledger->Record(e);
  parts_.admission->AnswerMembers(member_reply_, completions);
  LOG(INFO) << "generation " << membership.generation() << ": " << membership.members().size()
            << " workers resume at round " << parts_.ledger->next_round() << " (step "
            << parts_.ledger->next_step() << ")";
}

bool RunLifecycle::Resume(std::vector<Completion>* completions) {
  RoundLedger& ledger = *parts_.ledger;
  ++regroups_;
  // A fresh worker (0) holds the initial model, the state of the run's first round.
  const int64_t resume = std::max(parts_.membership->formed_next_round(), ledger.start_round());
  const int64_t committed = ledger.first_uncommitted();
  if (resume < committed) {
    // Nobody holds the state of the rounds trained so far: there is nothing to continue from.
    ++failures_;
    Fail(absl::StrCat("no surviving worker holds the model after round ", committed - 1,
                      " (every worker that trained it has failed); resume from the last "
                      "checkpoint"),
         completions);
    return false;
  }
  if (absl::Status s = ledger.ResumeAt(resume, parts_.membership->generation()); !s.ok()) {
    Fail(std::string(s.message()), completions);
    return false;
  }
  parts_.barrier->Close();
  return true;
}

void RunLifecycle::FailGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                                  absl::Time now, std::vector<Completion>* completions) {
  ++failures_;
  EndGeneration(reason, failed_ranks, now, completions);
}

void RunLifecycle::EndToAdmit(absl::Time now, std::vector<Completion>* completions) {
  // Everyone holds the state of the round just finished.
  EndGeneration(absl::StrCat("admitting ", parts_.membership->joiners().size(), " worker(s)"), {},
                now, completions);
}

void RunLifecycle::EndGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                                 absl::Time now, std::vector<Completion>* completions) {
  Membership& membership = *parts_.membership;
  membership.EndGeneration(reason, failed_ranks, now);
  auto ended = WithOutcome<v1::NextRoundsReply>(
      v1::Outcome::GENERATION_ENDED,
      absl::StrCat("generation ", membership.generation(), " ended: ", membership.end_reason()));
  parts_.barrier->Release(std::move(ended), completions);
  MaybeForm(now, completions);
}

void RunLifecycle::Fail(const std::string& message, std::vector<Completion>* completions) {
  if (ended()) return;
  LOG(ERROR) << "run failed: " << message;
  state_ = State::kFailed;
  message_ = message;
  ended_ = absl::Now();
  auto reply = WithOutcome<v1::NextRoundsReply>(v1::Outcome::RUN_FAILED, "run failed: " + message);
  parts_.barrier->Release(std::move(reply), completions);
  parts_.admission->RefuseAll(v1::Outcome::RUN_FAILED, "run failed: " + message, false,
                              completions);
  RecordEnd();
}

void RunLifecycle::MaybeFinish(std::vector<Completion>* completions) {
  const Membership& membership = *parts_.membership;
  const RoundLedger& ledger = *parts_.ledger;
  if (membership.active_members() > 0) return;
  // A stopped run may end before it ever ran (WAITING).
  const bool formed = !membership.forming() || (state_ == State::kWaiting && stop_requested_);
  if (!formed) return;
  const bool rendezvous_only =
      state_ == State::kRunning && ledger.next_round() == ledger.start_round();
  if ((state_ == State::kRunning || state_ == State::kWaiting) &&
      (plan_exhausted_ || rendezvous_only)) {
    if (rendezvous_only && !plan_exhausted_) message_ = kRendezvousOnly;
    Finish(completions);
  }
}

bool RunLifecycle::EveryRoundCommitted() const {
  const RoundLedger& ledger = *parts_.ledger;
  return ledger.nothing_pending() && !ledger.committed().empty() &&
         (plan_exhausted_ || !parts_.planner->RoundAt(ledger.next_round(), ledger.next_step()));
}

void RunLifecycle::Finish(std::vector<Completion>* completions) {
  parts_.ledger->CommitReady(parts_.membership->generation());
  state_ = State::kFinished;
  ended_ = absl::Now();
  // A call still waiting at the barrier (its worker left meanwhile) is answered too.
  auto finished =
      WithOutcome<v1::NextRoundsReply>(v1::Outcome::RUN_FINISHED, "the run has finished");
  parts_.barrier->Release(std::move(finished), completions);
  if (stop_requested_) message_ = kStoppedByOperator;
  LOG(INFO) << "run finished" << (stop_requested_ ? " (stopped by operator)" : "") << ": "
            << parts_.ledger->committed().size() << " rounds";
  RecordEnd();
}

void RunLifecycle::RecordEnd() {
  v1::JournalEntry e;
  e.mutable_ended()->set_state(StateName());
  e.mutable_ended()->set_message(message_);
  parts_.ledger->Record(e);
  parts_.ledger->WriteSummary(RenderSummaryJson(View()));
}

v1::StopReply RunLifecycle::Stop(const std::string& reason, std::vector<Completion>* completions) {
  const RoundLedger& ledger = *parts_.ledger;
  v1::StopReply reply;
  if (ended()) {
    *reply.mutable_outcome() = MakeOutcome(
        state_ == State::kFailed ? v1::Outcome::RUN_FAILED : v1::Outcome::RUN_FINISHED,
        absl::StrCat("run is already ", StateName(), message_.empty() ? "" : ": " + message_));
    reply.set_stop_step(ledger.committed_end_step().value_or(0));
    return reply;
  }
  if (!stop_requested_) {
    LOG(INFO) << "stop requested" << (reason.empty() ? "" : ": " + reason.substr(0, 200))
              << "; the run ends at step " << ledger.next_step()
              << " (after the rounds already handed out)";
    stop_requested_ = true;
    plan_exhausted_ = true;
    // Workers already at the barrier have trained every round handed out: let them go.
    auto finished = WithOutcome<v1::NextRoundsReply>(v1::Outcome::RUN_FINISHED, kStoppedByOperator);
    parts_.barrier->Release(std::move(finished), completions);
    parts_.admission->RefuseAll(v1::Outcome::RUN_FINISHED,
                                absl::StrCat("run is stopping: ", kStoppedByOperator), true,
                                completions);
    MaybeFinish(completions);  // no member at all (or all gone): the run ends now
  }
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  reply.set_stop_step(ledger.next_step());
  return reply;
}

RunView RunLifecycle::View() const {
  RunView v;
  v.run_id = run_id_;
  v.state = StateName();
  v.message = message_;
  v.waiting = state_ == State::kWaiting;
  v.ended = ended();
  v.recipe = parts_.recipe;
  v.planner = parts_.planner;
  v.membership = parts_.membership;
  v.ledger = parts_.ledger;
  v.world_size = static_cast<int>(parts_.recipe->workers);
  v.started = started_;
  v.ended_at = ended_;
  v.failures = failures_;
  v.regroups = regroups_;
  v.stop_requested = stop_requested_;
  return v;
}

}  // namespace qsr
