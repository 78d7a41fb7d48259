#include "coordinator/run_controller.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/outcome.h"
#include "glog/logging.h"

namespace qsr {
namespace {

constexpr char kStoppedByOperator[] = "stopped by operator";
// The message of a run whose workers met through the coordinator but trained their own rounds.
constexpr char kRendezvousOnly[] =
    "the workers used the coordinator for rendezvous only and trained their own rounds";

Membership::Options MembershipOptions(const Recipe& recipe, const RunController::Options& o) {
  Membership::Options m;
  m.initial_size = static_cast<int>(recipe.workers);
  m.min_workers = static_cast<int>(recipe.min_workers > 0 ? recipe.min_workers : 1);
  m.max_workers = static_cast<int>(recipe.max_workers > 0 ? recipe.max_workers : recipe.workers);
  m.heartbeat_timeout = o.heartbeat_timeout;
  m.regroup_timeout = o.regroup_timeout;
  m.replacement_timeout = o.replacement_timeout;
  return m;
}

// A resumed run starts where the checkpoint left off; rounds keep the numbers a fresh run would
// have given the steps before it.
RoundLedger::Options LedgerOptions(const Recipe& recipe, const RoundPlanner& planner,
                                   const RunController::Options& o, absl::Time started) {
  RoundLedger::Options l;
  if (recipe.resume_from_step > 0) {
    l.start_round = planner.FirstRoundFrom(recipe.resume_from_step);
    l.start_step = recipe.resume_from_step;
  }
  l.started = started;
  l.on_round_committed = o.on_round_committed;
  return l;
}

template <typename Reply>
void Answer(std::function<void(const Reply&)> done, Reply reply,
            std::vector<std::function<void()>>* completions) {
  completions->push_back([cb = std::move(done), r = std::move(reply)] { cb(r); });
}

}  // namespace

RunController::RunController(const Recipe& recipe, Options options, std::unique_ptr<RunLog> log,
                             std::shared_ptr<Journal> journal, const Journal::Recovered& recovered)
    : recipe_(recipe),
      recipe_yaml_(RecipeToYaml(recipe_)),
      options_(std::move(options)),
      planner_(recipe),
      world_size_(static_cast<int>(recipe.workers)),
      started_(absl::Now()),
      membership_(MembershipOptions(recipe_, options_)),
      admission_(&membership_, options_.run_id),
      ledger_(LedgerOptions(recipe_, planner_, options_, started_), std::move(log),
              std::move(journal)) {
  absl::MutexLock lock(&mu_);
  if (recovered.exists) {
    Recover(recovered);
  } else {
    v1::JournalEntry e;
    e.mutable_started()->set_run_id(options_.run_id);
    e.mutable_started()->set_recipe_yaml(recipe_yaml_);
    ledger_.Record(e);
  }
}

void RunController::Recover(const Journal::Recovered& r) {
  const absl::Time now = absl::Now();
  ledger_.Recover(r);
  if (r.ended) {
    state_ = r.end.state() == "FAILED" ? State::kFailed : State::kFinished;
    message_ = r.end.message();
    ended_ = now;
  } else if (r.generation > 0) {
    state_ = State::kRunning;
    membership_.Recover(r.generation, r.members, now);
  }
  LOG(INFO) << "recovered run " << r.run_id << " from " << ledger_.journal_path() << ": "
            << ledger_.committed().size() << " rounds committed, " << ledger_.pending_count()
            << " in flight, generation " << r.generation << " (" << StateName() << ")";
}

const char* RunController::StateName() const {
  switch (state_) {
    case State::kWaiting:
      return "WAITING";
    case State::kRunning:
      return membership_.forming() ? "REGROUPING" : "RUNNING";
    case State::kFinished:
      return "FINISHED";
    case State::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

v1::JoinReply RunController::MemberReply(int rank) const {
  v1::JoinReply reply;
  reply.set_run_id(options_.run_id);
  reply.set_rank(rank);
  reply.set_world_size(static_cast<int>(membership_.members().size()));
  reply.set_generation(membership_.generation());
  reply.set_recipe_yaml(recipe_yaml_);
  reply.set_start_round(ledger_.next_round());
  reply.set_start_step(ledger_.next_step());
  reply.set_rendezvous_timeout_ms(rendezvous_timeout_ms());
  reply.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  return reply;
}

absl::Status RunController::Join(const v1::JoinRequest& request, absl::Time now,
                                 absl::Time poll_deadline, JoinCallback done) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    if (request.next_round() > ledger_.next_round()) {
      return absl::InvalidArgumentError(
          absl::StrCat("next_round ", request.next_round(),
                       " was never served (rounds so far: ", ledger_.next_round(), ")"));
    }
    if (EndedLocked() || stop_requested_) {
      auto refused = WithOutcome<v1::JoinReply>(
          v1::Outcome::RUN_FINISHED,
          EndedLocked()
              ? absl::StrCat("run is ", StateName(), message_.empty() ? "" : ": ", message_)
              : absl::StrCat("run is stopping: ", kStoppedByOperator));
      refused.set_run_id(options_.run_id);
      Answer(std::move(done), refused, &completions);
    } else {
      Admit(request, now, poll_deadline, std::move(done), &completions);
    }
  }
  for (auto& c : completions) c();
  return absl::OkStatus();
}

void RunController::Admit(const v1::JoinRequest& request, absl::Time now, absl::Time poll_deadline,
                          JoinCallback done, std::vector<Completion>* completions) {
  const bool was_forming = membership_.forming();
  const int64_t max_workers = recipe_.max_workers > 0 ? recipe_.max_workers : recipe_.workers;
  auto member_reply = [this](int rank)
                          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return MemberReply(rank); };
  if (admission_.Join(request, now, poll_deadline, max_workers, member_reply, std::move(done),
                      completions)) {
    return;
  }
  if (!was_forming && membership_.forming()) {
    // The caller reported that its group broke: release the barrier too.
    ++failures_;
    EndGeneration(membership_.end_reason(), {}, now, completions);
  }
  MaybeForm(now, completions);
}

absl::StatusOr<v1::JoinReply> RunController::JoinNow(const v1::JoinRequest& request,
                                                     absl::Time now) {
  std::optional<v1::JoinReply> got;
  absl::Status s = Join(request, now, now, [&got](const v1::JoinReply& r) { got = r; });
  if (!s.ok()) return s;
  if (!got) Tick(now);  // still waiting for its generation: the poll ends now
  if (!got) return absl::InternalError("Join did not answer");
  return *got;
}

void RunController::MaybeForm(absl::Time now, std::vector<Completion>* completions) {
  if (EndedLocked()) return;
  if (!membership_.TryForm(now)) {
    if (std::optional<std::string> why = membership_.Unformable(now)) {
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
  if (membership_.generation() > 1 && !Resume(completions)) return;
  state_ = State::kRunning;
  v1::JournalEntry e;
  e.mutable_generation()->set_generation(membership_.generation());
  for (const Membership::Member& m : membership_.members()) {
    e.mutable_generation()->add_members(m.worker_id);
  }
  ledger_.Record(e);
  admission_.AnswerMembers([this](int rank)
                               ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return MemberReply(rank); },
                           completions);
  LOG(INFO) << "generation " << membership_.generation() << ": " << membership_.members().size()
            << " workers resume at round " << ledger_.next_round() << " (step "
            << ledger_.next_step() << ")";
}

bool RunController::Resume(std::vector<Completion>* completions) {
  ++regroups_;
  // A fresh worker (0) holds the initial model, the state of the run's first round.
  const int64_t resume = std::max(membership_.formed_next_round(), ledger_.start_round());
  const int64_t committed = ledger_.first_uncommitted();
  if (resume < committed) {
    // Nobody holds the state of the rounds trained so far: there is nothing to continue from.
    ++failures_;
    Fail(absl::StrCat("no surviving worker holds the model after round ", committed - 1,
                      " (every worker that trained it has failed); resume from the last "
                      "checkpoint"),
         completions);
    return false;
  }
  if (absl::Status s = ledger_.ResumeAt(resume, membership_.generation()); !s.ok()) {
    Fail(std::string(s.message()), completions);
    return false;
  }
  barrier_.Close();
  return true;
}

void RunController::MaybeReleaseBarrier(absl::Time now, std::vector<Completion>* completions) {
  if (!barrier_.open() || barrier_.waiting() == 0 ||
      barrier_.waiting() < membership_.active_members()) {
    return;
  }
  if (membership_.admission_pending()) {
    // A round boundary: the group re-forms with the workers waiting to join. Everyone holds the
    // state of the round just finished.
    EndGeneration(absl::StrCat("admitting ", membership_.joiners().size(), " worker(s)"), {}, now,
                  completions);
  } else {
    barrier_.Release(PlanBatch(barrier_.round()), completions);
  }
}

void RunController::EndGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                                  absl::Time now, std::vector<Completion>* completions) {
  membership_.EndGeneration(reason, failed_ranks, now);
  auto ended = WithOutcome<v1::NextRoundsReply>(
      v1::Outcome::GENERATION_ENDED,
      absl::StrCat("generation ", membership_.generation(), " ended: ", membership_.end_reason()));
  barrier_.Release(std::move(ended), completions);
  MaybeForm(now, completions);
}

v1::Outcome RunController::MemberOutcome(Membership::Standing standing, int64_t generation) const {
  if (EndedLocked()) {
    return MakeOutcome(
        state_ == State::kFailed ? v1::Outcome::RUN_FAILED : v1::Outcome::RUN_FINISHED,
        absl::StrCat("run is ", StateName(), ": ", message_));
  }
  if (standing == Membership::Standing::kEnded) {
    return MakeOutcome(
        v1::Outcome::GENERATION_ENDED,
        absl::StrCat("generation ", generation, " has ended: ", membership_.end_reason()));
  }
  return MakeOutcome(v1::Outcome::OK, "");
}

absl::StatusOr<v1::HeartbeatReply> RunController::Heartbeat(const v1::HeartbeatRequest& request,
                                                            absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Membership::Standing> standing = membership_.CheckWithCoMembers(
      request.worker_id(), request.rank(), request.generation(), request.co_members(), now);
  if (!standing.ok()) return standing.status();
  v1::HeartbeatReply reply;
  *reply.mutable_outcome() = MemberOutcome(*standing, request.generation());
  return reply;
}

absl::Status RunController::NextRounds(const v1::NextRoundsRequest& request, absl::Time now,
                                       NextRoundsCallback done) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Membership::Standing> standing = membership_.CheckWithCoMembers(
        request.worker_id(), request.rank(), request.generation(), request.co_members(), now);
    if (!standing.ok()) return standing.status();
    v1::NextRoundsReply reply;
    *reply.mutable_outcome() = MemberOutcome(*standing, request.generation());
    if (reply.outcome().code() == v1::Outcome::OK && stop_requested_) {
      // Every round handed out has been trained by this worker: it may leave.
      *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, kStoppedByOperator);
    }
    if (reply.outcome().code() != v1::Outcome::OK) {
      Answer(std::move(done), reply, &completions);
    } else {
      if (request.next_round() > ledger_.next_round()) {
        return absl::InvalidArgumentError(absl::StrCat("next_round ", request.next_round(),
                                                       " is out of range [0, ",
                                                       ledger_.next_round(), "]"));
      }
      // CheckWithCoMembers answered kCurrent: the ranks are this generation's.
      std::vector<int> ranks = {request.rank()};
      for (const v1::CoMember& m : request.co_members()) ranks.push_back(m.rank());
      absl::Status arrived = barrier_.Arrive(request.next_round(), ranks,
                                             static_cast<int>(membership_.members().size()), now,
                                             options_.round_timeout, std::move(done), &completions);
      if (!arrived.ok()) return arrived;
      MaybeReleaseBarrier(now, &completions);
    }
  }
  for (auto& c : completions) c();
  return absl::OkStatus();
}

v1::NextRoundsReply RunController::PlanBatch(int64_t next_round) {
  auto reply = WithOutcome<v1::NextRoundsReply>(v1::Outcome::OK, "");
  if (next_round < ledger_.next_round()) {
    // Everyone already holds these plans (a retried call): serve them again from the record.
    for (v1::RoundPlan& plan : ledger_.PendingFrom(next_round)) *reply.add_rounds() = plan;
    return reply;
  }
  for (v1::RoundPlan& plan :
       ledger_.ServeBatch(planner_, options_.plan_batch_steps, membership_.active_members())) {
    *reply.add_rounds() = std::move(plan);
  }
  if (reply.rounds_size() == 0) {
    plan_exhausted_ = true;
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, "all rounds are done");
  }
  return reply;
}

absl::StatusOr<v1::ReportReply> RunController::Report(const v1::ReportRequest& request,
                                                      absl::Time now) {
  absl::MutexLock lock(&mu_);
  // Reports of an ended generation are still welcome: survivors flush them before joining again.
  absl::StatusOr<Membership::Standing> standing =
      membership_.Check(request.worker_id(), request.rank(), request.generation(), now);
  if (!standing.ok()) return standing.status();
  const bool ended = *standing == Membership::Standing::kEnded;
  for (const v1::RoundReport& r : request.rounds()) {
    if (absl::Status s = ledger_.AddRoundReport(request.worker_id(), r, ended); !s.ok()) return s;
  }
  // Every rank computes the same evaluation (sums are all-reduced) and rank 0 reports it; rank 0
  // writes the checkpoint manifest once every worker has written its part.
  if (request.rank() == 0) {
    for (const v1::EvalReport& e : request.evals()) ledger_.AddEval(e, now);
    for (const v1::CheckpointReport& c : request.checkpoints()) ledger_.AddCheckpoint(c);
  }
  ledger_.CommitReady(membership_.generation());
  auto reply = WithOutcome<v1::ReportReply>(v1::Outcome::OK, "");
  return reply;
}

absl::StatusOr<v1::LeaveReply> RunController::Leave(const v1::LeaveRequest& request,
                                                    absl::Time now) {
  std::vector<Completion> completions;
  auto reply = WithOutcome<v1::LeaveReply>(v1::Outcome::OK, "");
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Membership::Standing> standing =
        membership_.Check(request.worker_id(), request.rank(), request.generation(), now);
    if (!standing.ok()) return standing.status();
    admission_.Leave(request.worker_id(), &completions);
    const bool ended = EndedLocked();
    if (*standing == Membership::Standing::kEnded || ended) {
      // A worker of an ended generation (or of an ended run) gives up: do not wait for it.
      if (request.generation() == membership_.generation()) membership_.MarkLeft(request.rank());
      if (!ended) MaybeForm(now, &completions);
    } else if (!request.error().empty()) {
      ++failures_;
      EndGeneration(absl::StrCat("rank ", request.rank(), " failed: ", request.error()),
                    {request.rank()}, now, &completions);
    } else if (!plan_exhausted_ && ledger_.next_round() > ledger_.start_round()) {
      // Leaving in the middle of the coordinator's plan. (Workers that never asked for a round,
      // such as programs using the qsr library, use the coordinator only to meet.)
      ++failures_;
      EndGeneration(absl::StrCat("rank ", request.rank(), " left before the run ended"),
                    {request.rank()}, now, &completions);
    } else {
      membership_.MarkLeft(request.rank());
      // The others may all be waiting for this one at the barrier.
      MaybeReleaseBarrier(now, &completions);
    }
    MaybeFinish(&completions);
  }
  for (auto& c : completions) c();
  return reply;
}

void RunController::Fail(const std::string& message, std::vector<Completion>* completions) {
  if (EndedLocked()) return;
  LOG(ERROR) << "run failed: " << message;
  state_ = State::kFailed;
  message_ = message;
  ended_ = absl::Now();
  auto reply = WithOutcome<v1::NextRoundsReply>(v1::Outcome::RUN_FAILED, "run failed: " + message);
  barrier_.Release(std::move(reply), completions);
  admission_.RefuseAll(v1::Outcome::RUN_FAILED, "run failed: " + message, false, completions);
  RecordEnd();
}

void RunController::MaybeFinish(std::vector<Completion>* completions) {
  if (membership_.active_members() > 0) return;
  // A stopped run may end before it ever ran (WAITING).
  const bool formed = !membership_.forming() || (state_ == State::kWaiting && stop_requested_);
  if (!formed) return;
  const bool rendezvous_only =
      state_ == State::kRunning && ledger_.next_round() == ledger_.start_round();
  if ((state_ == State::kRunning || state_ == State::kWaiting) &&
      (plan_exhausted_ || rendezvous_only)) {
    if (rendezvous_only && !plan_exhausted_) message_ = kRendezvousOnly;
    Finish(completions);
  }
}

bool RunController::EveryRoundCommitted() const {
  return ledger_.nothing_pending() && !ledger_.committed().empty() &&
         (plan_exhausted_ || !planner_.RoundAt(ledger_.next_round(), ledger_.next_step()));
}

void RunController::Finish(std::vector<Completion>* completions) {
  ledger_.CommitReady(membership_.generation());
  state_ = State::kFinished;
  ended_ = absl::Now();
  // A call still waiting at the barrier (its worker left meanwhile) is answered too.
  auto finished =
      WithOutcome<v1::NextRoundsReply>(v1::Outcome::RUN_FINISHED, "the run has finished");
  barrier_.Release(std::move(finished), completions);
  if (stop_requested_) message_ = kStoppedByOperator;
  LOG(INFO) << "run finished" << (stop_requested_ ? " (stopped by operator)" : "") << ": "
            << ledger_.committed().size() << " rounds";
  RecordEnd();
}

void RunController::RecordEnd() {
  v1::JournalEntry e;
  e.mutable_ended()->set_state(StateName());
  e.mutable_ended()->set_message(message_);
  ledger_.Record(e);
  ledger_.WriteSummary(RenderSummaryJson(View()));
}

void RunController::Tick(absl::Time now) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    if (EndedLocked()) {
      // Nobody will tell a dead worker that the run is over: stop waiting for it.
      membership_.FailSilent(now);
    } else if (state_ == State::kRunning && !membership_.forming()) {
      CheckLiveness(now, &completions);
    }
    admission_.Expire(now, &completions);
    if (!EndedLocked() && membership_.forming()) MaybeForm(now, &completions);
  }
  for (auto& c : completions) c();
}

void RunController::CheckLiveness(absl::Time now, std::vector<Completion>* completions) {
  if (std::vector<int> expired = membership_.Expired(now); !expired.empty()) {
    ++failures_;
    EndGeneration(absl::StrCat("rank(s) ", absl::StrJoin(expired, ","), " missed heartbeats for ",
                               absl::FormatDuration(options_.heartbeat_timeout)),
                  expired, now, completions);
  } else if (barrier_.Overdue(now)) {
    std::vector<int> stragglers;
    for (const Membership::Member& m : membership_.members()) {
      if (m.active() && !barrier_.Waiting(m.rank)) stragglers.push_back(m.rank);
    }
    ++failures_;
    EndGeneration(
        absl::StrCat("straggler rank(s) ", absl::StrJoin(stragglers, ","), " did not reach round ",
                     barrier_.round(), " within ", absl::FormatDuration(options_.round_timeout)),
        stragglers, now, completions);
  }
}

bool RunController::DoneLocked() const {
  return EndedLocked() && membership_.active_members() == 0 && admission_.empty();
}

bool RunController::Done() const {
  absl::MutexLock lock(&mu_);
  return DoneLocked();
}

bool RunController::Failed() const {
  absl::MutexLock lock(&mu_);
  return state_ == State::kFailed;
}

bool RunController::AwaitDone(absl::Time deadline) const {
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return DoneLocked(); };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

RunView RunController::View() const {
  RunView v;
  v.run_id = options_.run_id;
  v.state = StateName();
  v.message = message_;
  v.waiting = state_ == State::kWaiting;
  v.ended = EndedLocked();
  v.recipe = &recipe_;
  v.planner = &planner_;
  v.membership = &membership_;
  v.ledger = &ledger_;
  v.world_size = world_size_;
  v.started = started_;
  v.ended_at = ended_;
  v.failures = failures_;
  v.regroups = regroups_;
  v.stop_requested = stop_requested_;
  return v;
}

v1::GetStatusReply RunController::Status(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return RenderStatus(View(), now);
}

v1::ListRoundsReply RunController::Rounds(const v1::ListRoundsRequest& request) const {
  absl::MutexLock lock(&mu_);
  return ledger_.ListRounds(request.from_round(), request.limit());
}

v1::ListEvalsReply RunController::Evals() const {
  absl::MutexLock lock(&mu_);
  v1::ListEvalsReply reply;
  for (const v1::EvalReport& e : ledger_.evals()) *reply.add_evals() = e;
  return reply;
}

v1::StopReply RunController::Stop(const v1::StopRequest& request) {
  std::vector<Completion> completions;
  v1::StopReply reply;
  {
    absl::MutexLock lock(&mu_);
    if (EndedLocked()) {
      *reply.mutable_outcome() = MakeOutcome(
          state_ == State::kFailed ? v1::Outcome::RUN_FAILED : v1::Outcome::RUN_FINISHED,
          absl::StrCat("run is already ", StateName(), message_.empty() ? "" : ": " + message_));
      reply.set_stop_step(ledger_.committed_end_step().value_or(0));
      return reply;
    }
    if (!stop_requested_) {
      LOG(INFO) << "stop requested"
                << (request.reason().empty() ? "" : ": " + request.reason().substr(0, 200))
                << "; the run ends at step " << ledger_.next_step()
                << " (after the rounds already handed out)";
      stop_requested_ = true;
      plan_exhausted_ = true;
      // Workers already at the barrier have trained every round handed out: let them go.
      auto finished =
          WithOutcome<v1::NextRoundsReply>(v1::Outcome::RUN_FINISHED, kStoppedByOperator);
      barrier_.Release(std::move(finished), &completions);
      admission_.RefuseAll(v1::Outcome::RUN_FINISHED,
                           absl::StrCat("run is stopping: ", kStoppedByOperator), true,
                           &completions);
      MaybeFinish(&completions);  // no member at all (or all gone): the run ends now
    }
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
    reply.set_stop_step(ledger_.next_step());
  }
  for (auto& c : completions) c();
  return reply;
}

}  // namespace qsr
