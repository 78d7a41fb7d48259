#include "coordinator/run_controller.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/json_writer.h"
#include "glog/logging.h"

namespace qsr {
namespace {

// Rounds averaged over for samples/s.
constexpr size_t kThroughputWindow = 32;

constexpr char kStoppedByOperator[] = "stopped by operator";
// The message of a run whose workers met through the coordinator but trained their own rounds.
constexpr char kRendezvousOnly[] =
    "the workers used the coordinator for rendezvous only and trained their own rounds";

v1::Outcome MakeOutcome(v1::Outcome::Code code, const std::string& message) {
  v1::Outcome o;
  o.set_code(code);
  o.set_message(message);
  return o;
}

}  // namespace

RunController::RunController(const Recipe& recipe, Options options, std::unique_ptr<RunLog> log)
    : recipe_(recipe),
      options_(std::move(options)),
      planner_(recipe),
      world_size_(static_cast<int>(recipe.workers)),
      started_(absl::Now()),
      log_(std::move(log)) {
  if (recipe_.resume_from_step > 0) {
    // A resumed run starts where the checkpoint left off; rounds keep the numbers a fresh run
    // would have given the steps before it.
    for (const Round& r : planner_.Plan()) {
      if (r.start_step >= recipe_.resume_from_step) break;
      ++start_round_;
    }
    next_round_to_serve_ = start_round_;
    next_step_to_serve_ = recipe_.resume_from_step;
  }
}

const char* RunController::StateName(State s) {
  switch (s) {
    case State::kWaiting:
      return "WAITING";
    case State::kRunning:
      return "RUNNING";
    case State::kFinished:
      return "FINISHED";
    case State::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

absl::StatusOr<v1::JoinReply> RunController::Join(const v1::JoinRequest& request, absl::Time now) {
  if (request.worker_id().empty() || request.worker_id().size() > 256) {
    return absl::InvalidArgumentError("worker_id must be 1 to 256 bytes");
  }
  if (request.host().size() > 256 || request.device().size() > 64) {
    return absl::InvalidArgumentError("host (256) or device (64 bytes) too long");
  }
  absl::MutexLock lock(&mu_);
  v1::JoinReply reply;
  reply.set_run_id(options_.run_id);
  reply.set_world_size(world_size_);
  reply.set_generation(generation_);
  reply.set_rendezvous_timeout_ms(rendezvous_timeout_ms());
  // A retried Join (the reply was lost) gets the same rank back.
  auto existing = std::find_if(members_.begin(), members_.end(),
                               [&](const Member& m) { return m.worker_id == request.worker_id(); });
  Member* member = nullptr;
  if (existing != members_.end() && !existing->left) {
    member = &*existing;
  } else if (state_ == State::kFinished || state_ == State::kFailed) {
    *reply.mutable_outcome() =
        MakeOutcome(v1::Outcome::RUN_FINISHED, absl::StrCat("run is ", StateName(state_)));
    return reply;
  } else if (stop_requested_) {
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED,
                                           absl::StrCat("run is stopping: ", kStoppedByOperator));
    return reply;
  } else if (static_cast<int>(members_.size()) >= world_size_) {
    *reply.mutable_outcome() = MakeOutcome(
        v1::Outcome::REJECTED,
        absl::StrCat("run is full: ", members_.size(), " of ", world_size_, " workers joined"));
    return reply;
  } else {
    Member m;
    m.rank = static_cast<int>(members_.size());
    m.worker_id = request.worker_id();
    m.host = request.host();
    m.device = request.device();
    members_.push_back(m);
    member = &members_.back();
    LOG(INFO) << "worker " << m.worker_id << " (" << m.host << ", " << m.device
              << ") joined as rank " << m.rank << " of " << world_size_;
    if (static_cast<int>(members_.size()) == world_size_) state_ = State::kRunning;
  }
  member->last_seen = now;
  reply.set_rank(member->rank);
  reply.set_recipe_yaml(RecipeToYaml(recipe_));
  reply.set_start_round(start_round_);
  reply.set_start_step(std::max<int64_t>(0, recipe_.resume_from_step));
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  return reply;
}

absl::StatusOr<RunController::Member*> RunController::FindMember(const std::string& worker_id,
                                                                 int rank, int64_t generation,
                                                                 absl::Time now) {
  if (rank < 0 || rank >= static_cast<int>(members_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is not a member (",
                                                   members_.size(), " workers have joined)"));
  }
  Member& m = members_[rank];
  if (m.worker_id != worker_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("rank ", rank, " belongs to worker ", m.worker_id, ", not ", worker_id));
  }
  if (generation != generation_) {
    return absl::FailedPreconditionError(
        absl::StrCat("generation ", generation, " is not the current one (", generation_, ")"));
  }
  m.last_seen = now;
  return &m;
}

absl::Status RunController::NextRounds(const v1::NextRoundsRequest& request, absl::Time now,
                                       NextRoundsCallback done) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Member*> member =
        FindMember(request.worker_id(), request.rank(), request.generation(), now);
    if (!member.ok()) return member.status();
    if (state_ == State::kFailed || state_ == State::kFinished) {
      v1::NextRoundsReply reply;
      *reply.mutable_outcome() = MakeOutcome(
          state_ == State::kFailed ? v1::Outcome::RUN_FAILED : v1::Outcome::RUN_FINISHED,
          absl::StrCat("run is ", StateName(state_), ": ", message_));
      completions.push_back([done, reply] { done(reply); });
    } else if (stop_requested_) {
      // Every round handed out has been trained by this worker: it may leave.
      v1::NextRoundsReply reply;
      *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, kStoppedByOperator);
      completions.push_back([done, reply] { done(reply); });
    } else {
      if (request.next_round() < 0 || request.next_round() > next_round_to_serve_) {
        return absl::InvalidArgumentError(absl::StrCat("next_round ", request.next_round(),
                                                       " is out of range [0, ",
                                                       next_round_to_serve_, "]"));
      }
      if (barrier_round_ < 0) {
        barrier_round_ = request.next_round();
        barrier_deadline_ = now + options_.rendezvous_timeout;
      } else if (barrier_round_ != request.next_round()) {
        return absl::FailedPreconditionError(
            absl::StrCat("rank ", request.rank(), " asks for round ", request.next_round(),
                         " while the group is at round ", barrier_round_));
      }
      for (const Waiter& w : waiters_) {
        if (w.rank == request.rank()) {
          return absl::FailedPreconditionError(
              absl::StrCat("rank ", request.rank(), " is already waiting at the barrier"));
        }
      }
      waiters_.push_back({request.rank(), std::move(done)});
      if (static_cast<int>(waiters_.size()) == world_size_) {
        v1::NextRoundsReply reply = PlanBatch(barrier_round_);
        for (Waiter& w : waiters_) {
          completions.push_back([cb = std::move(w.done), reply] { cb(reply); });
        }
        waiters_.clear();
        barrier_round_ = -1;
      }
    }
  }
  for (auto& c : completions) c();
  return absl::OkStatus();
}

v1::NextRoundsReply RunController::PlanBatch(int64_t next_round) {
  v1::NextRoundsReply reply;
  if (next_round < next_round_to_serve_) {
    // Everyone already holds these plans (a retried call): serve them again from the record.
    for (auto it = pending_.find(next_round); it != pending_.end(); ++it) {
      *reply.add_rounds() = it->second.plan;
    }
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
    return reply;
  }
  const int64_t spe = recipe_.steps_per_epoch;
  int64_t steps = 0;
  while (steps < options_.plan_batch_steps) {
    std::optional<Round> round = planner_.RoundAt(next_round_to_serve_, next_step_to_serve_);
    if (!round) break;
    v1::RoundPlan plan;
    plan.set_round(round->index);
    plan.set_start_step(round->start_step);
    plan.set_h(round->h);
    plan.set_lr(round->lr);
    plan.set_data_parallel(round->data_parallel);
    plan.set_eval_after(round->end_step() / spe != round->start_step / spe ||
                        round->end_step() == planner_.total_steps());
    pending_[round->index].plan = plan;
    *reply.add_rounds() = plan;
    current_ = plan;
    ++next_round_to_serve_;
    next_step_to_serve_ = round->end_step();
    steps += round->h;
  }
  if (reply.rounds_size() == 0) {
    plan_exhausted_ = true;
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, "all rounds are done");
  } else {
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  }
  return reply;
}

absl::StatusOr<v1::ReportReply> RunController::Report(const v1::ReportRequest& request,
                                                      absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Member*> member =
      FindMember(request.worker_id(), request.rank(), request.generation(), now);
  if (!member.ok()) return member.status();
  for (const v1::RoundReport& r : request.rounds()) {
    auto it = pending_.find(r.round());
    if (it == pending_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("round ", r.round(), " was not served or is already committed"));
    }
    if (r.start_step() != it->second.plan.start_step() || r.h() != it->second.plan.h()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "round ", r.round(), " report says steps [", r.start_step(), ", +", r.h(),
          ") but the plan was [", it->second.plan.start_step(), ", +", it->second.plan.h(), ")"));
    }
    if (r.seconds() < 0 || r.samples() < 0 || r.bytes_sent() < 0) {
      return absl::InvalidArgumentError("round report has negative seconds, samples or bytes");
    }
    it->second.reports[request.rank()] = r;
    if (r.seconds() > 0) (*member)->samples_per_sec = r.samples() / r.seconds();
  }
  for (const v1::EvalReport& e : request.evals()) {
    // Every rank computes the same evaluation (sums are all-reduced); rank 0 reports it.
    if (request.rank() != 0 || e.step() <= last_eval_step_) continue;
    last_eval_step_ = e.step();
    last_eval_ = e;
    have_eval_ = true;
    evals_.push_back(e);
    if (log_) {
      log_->AppendEval(JsonObject()
                           .Add("step", e.step())
                           .Add("epoch", e.epoch())
                           .Add("test_loss", e.test_loss())
                           .Add("test_acc", e.test_acc())
                           .Add("test_acc5", e.test_acc5())
                           .Add("examples", e.examples())
                           .Add("elapsed_s", absl::ToDoubleSeconds(now - started_))
                           .str());
    }
    LOG(INFO) << "eval at step " << e.step() << " (epoch " << e.epoch()
              << "): test_acc=" << e.test_acc() << " test_loss=" << e.test_loss();
  }
  CommitReadyRounds();
  v1::ReportReply reply;
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  return reply;
}

void RunController::CommitReadyRounds() {
  while (!pending_.empty()) {
    auto it = pending_.begin();
    PendingRound& p = it->second;
    if (static_cast<int>(p.reports.size()) < world_size_) return;
    v1::RoundRecord rec;
    rec.set_round(p.plan.round());
    rec.set_step(p.plan.start_step());
    rec.set_lr(p.plan.lr());
    rec.set_h(p.plan.h());
    rec.set_workers(world_size_);
    double loss = 0, seconds = 0;
    int64_t bytes = 0, samples = 0;
    bool identical = true;
    const uint64_t digest = p.reports.begin()->second.params_digest();
    for (const auto& [rank, r] : p.reports) {
      identical = identical && r.params_digest() == digest;
      loss += r.train_loss();
      seconds = std::max(seconds, r.seconds());
      bytes = std::max(bytes, r.bytes_sent());
      samples += r.samples();
    }
    rec.set_train_loss(loss / world_size_);
    rec.set_seconds(seconds);
    rec.set_bytes(bytes);
    rec.set_samples(samples);
    rec.set_identical(identical);
    if (!identical) LOG(ERROR) << "round " << rec.round() << ": workers' parameters differ";
    committed_.push_back(rec);
    if (options_.on_round_committed) options_.on_round_committed(rec);
    bytes_per_worker_ += bytes;
    train_loss_ = rec.train_loss();
    recent_.emplace_back(samples, seconds);
    if (recent_.size() > kThroughputWindow) recent_.pop_front();
    if (log_) {
      log_->AppendRound(JsonObject()
                            .Add("round", rec.round())
                            .Add("step", rec.step())
                            .Add("lr", rec.lr())
                            .Add("h", rec.h())
                            .Add("workers", rec.workers())
                            .Add("bytes", rec.bytes())
                            .Add("seconds", rec.seconds())
                            .Add("train_loss", rec.train_loss())
                            .Add("samples", rec.samples())
                            .Add("identical", rec.identical())
                            .str());
    }
    pending_.erase(it);
  }
}

absl::StatusOr<v1::LeaveReply> RunController::Leave(const v1::LeaveRequest& request,
                                                    absl::Time now) {
  std::vector<Completion> completions;
  v1::LeaveReply reply;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Member*> member =
        FindMember(request.worker_id(), request.rank(), request.generation(), now);
    if (!member.ok()) return member.status();
    (*member)->left = true;
    if (!request.error().empty()) {
      ++failures_;
      completions = Fail(absl::StrCat("rank ", request.rank(), " failed: ", request.error()));
    } else if (!plan_exhausted_ && state_ != State::kFailed &&
               next_round_to_serve_ > start_round_) {
      // Leaving in the middle of the coordinator's plan. (Workers that never asked for a round,
      // such as programs using the qsr library, use the coordinator only to meet.)
      ++failures_;
      completions = Fail(absl::StrCat("rank ", request.rank(), " left before the run ended"));
    }
    MaybeFinish();
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  }
  for (auto& c : completions) c();
  return reply;
}

std::vector<RunController::Completion> RunController::Fail(const std::string& message) {
  std::vector<Completion> completions;
  if (state_ == State::kFailed || state_ == State::kFinished) return completions;
  LOG(ERROR) << "run failed: " << message;
  state_ = State::kFailed;
  message_ = message;
  ended_ = absl::Now();
  v1::NextRoundsReply reply;
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FAILED, "run failed: " + message);
  for (Waiter& w : waiters_) completions.push_back([cb = std::move(w.done), reply] { cb(reply); });
  waiters_.clear();
  barrier_round_ = -1;
  if (log_) {
    if (absl::Status s = log_->WriteSummary(SummaryJson()); !s.ok()) LOG(ERROR) << s;
  }
  return completions;
}

void RunController::MaybeFinish() {
  for (const Member& m : members_) {
    if (!m.left) return;
  }
  // A stopped run may end before it ever ran (WAITING).
  const bool rendezvous_only = state_ == State::kRunning && next_round_to_serve_ == start_round_;
  if ((state_ == State::kRunning || state_ == State::kWaiting) &&
      (plan_exhausted_ || rendezvous_only)) {
    if (rendezvous_only && !plan_exhausted_) message_ = kRendezvousOnly;
    CommitReadyRounds();
    state_ = State::kFinished;
    ended_ = absl::Now();
    if (stop_requested_) message_ = kStoppedByOperator;
    LOG(INFO) << "run finished" << (stop_requested_ ? " (stopped by operator)" : "") << ": "
              << committed_.size() << " rounds";
    if (log_) {
      if (absl::Status s = log_->WriteSummary(SummaryJson()); !s.ok()) LOG(ERROR) << s;
    }
  }
}

void RunController::Tick(absl::Time now) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    if (barrier_round_ >= 0 && now >= barrier_deadline_) {
      ++failures_;
      completions = Fail(absl::StrCat("only ", waiters_.size(), " of ", world_size_,
                                      " workers reached round ", barrier_round_, " within ",
                                      absl::FormatDuration(options_.rendezvous_timeout)));
    }
  }
  for (auto& c : completions) c();
}

bool RunController::Done() const {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kFinished && state_ != State::kFailed) return false;
  for (const Member& m : members_) {
    if (!m.left) return false;
  }
  return true;
}

bool RunController::Failed() const {
  absl::MutexLock lock(&mu_);
  return state_ == State::kFailed;
}

bool RunController::AwaitDone(absl::Time deadline) const {
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (state_ != State::kFinished && state_ != State::kFailed) return false;
    for (const Member& m : members_) {
      if (!m.left) return false;
    }
    return true;
  };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
}

v1::GetStatusReply RunController::Status(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  v1::GetStatusReply s;
  s.set_run_id(options_.run_id);
  s.set_state(StateName(state_));
  s.set_message(message_);
  const int64_t step = committed_.empty() ? std::max<int64_t>(0, recipe_.resume_from_step)
                                          : committed_.back().step() + committed_.back().h();
  s.set_step(step);
  s.set_total_steps(planner_.total_steps());
  s.set_epoch(static_cast<double>(step) / recipe_.steps_per_epoch);
  s.set_epochs(recipe_.epochs);
  s.set_round(start_round_ + static_cast<int64_t>(committed_.size()));
  s.set_lr(current_.h() > 0 ? current_.lr() : planner_.schedule().At(0));
  s.set_h(current_.h());
  int workers = 0;
  for (const Member& m : members_) workers += m.left ? 0 : 1;
  s.set_workers(workers);
  s.set_world_size(world_size_);
  s.set_generation(generation_);
  int64_t samples = 0;
  double seconds = 0;
  for (const auto& [n, sec] : recent_) {
    samples += n;
    seconds += sec;
  }
  s.set_samples_per_sec(seconds > 0 ? samples / seconds : 0.0);
  s.set_train_loss(train_loss_);
  s.set_test_acc(have_eval_ ? last_eval_.test_acc() : -1.0);
  s.set_test_loss(have_eval_ ? last_eval_.test_loss() : -1.0);
  s.set_bytes_per_worker(bytes_per_worker_);
  absl::Time end = (state_ == State::kFinished || state_ == State::kFailed) ? ended_ : now;
  s.set_elapsed_s(absl::ToDoubleSeconds(end - started_));
  s.set_run_dir(log_ ? log_->dir() : "");
  s.set_optimizer(recipe_.optimizer);
  s.set_model(recipe_.model);
  s.set_failures(failures_);
  s.set_stop_requested(stop_requested_);
  for (const Member& m : members_) {
    v1::WorkerInfo* w = s.add_worker_info();
    w->set_rank(m.rank);
    w->set_worker_id(m.worker_id);
    w->set_host(m.host);
    w->set_device(m.device);
    w->set_state(m.left ? "LEFT" : "ACTIVE");
    w->set_last_seen_s(absl::ToDoubleSeconds(now - m.last_seen));
    w->set_samples_per_sec(m.samples_per_sec);
  }
  return s;
}

v1::ListRoundsReply RunController::Rounds(const v1::ListRoundsRequest& request) const {
  absl::MutexLock lock(&mu_);
  v1::ListRoundsReply reply;
  int64_t from = std::max<int64_t>(0, request.from_round() - start_round_);
  int64_t end = static_cast<int64_t>(committed_.size());
  if (request.limit() > 0) end = std::min(end, from + request.limit());
  for (int64_t i = from; i < end; ++i) *reply.add_rounds() = committed_[i];
  return reply;
}

v1::ListEvalsReply RunController::Evals() const {
  absl::MutexLock lock(&mu_);
  v1::ListEvalsReply reply;
  for (const v1::EvalReport& e : evals_) *reply.add_evals() = e;
  return reply;
}

v1::StopReply RunController::Stop(const v1::StopRequest& request) {
  std::vector<Completion> completions;
  v1::StopReply reply;
  {
    absl::MutexLock lock(&mu_);
    if (state_ == State::kFinished || state_ == State::kFailed) {
      *reply.mutable_outcome() = MakeOutcome(
          state_ == State::kFailed ? v1::Outcome::RUN_FAILED : v1::Outcome::RUN_FINISHED,
          absl::StrCat("run is already ", StateName(state_),
                       message_.empty() ? "" : ": " + message_));
      reply.set_stop_step(committed_.empty() ? 0
                                             : committed_.back().step() + committed_.back().h());
      return reply;
    }
    if (!stop_requested_) {
      LOG(INFO) << "stop requested"
                << (request.reason().empty() ? "" : ": " + request.reason().substr(0, 200))
                << "; the run ends at step " << next_step_to_serve_
                << " (after the rounds already handed out)";
      stop_requested_ = true;
      plan_exhausted_ = true;
      // Workers already at the barrier have trained every round handed out: let them go.
      v1::NextRoundsReply finished;
      *finished.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, kStoppedByOperator);
      for (Waiter& w : waiters_) {
        completions.push_back([cb = std::move(w.done), finished] { cb(finished); });
      }
      waiters_.clear();
      barrier_round_ = -1;
      MaybeFinish();  // no member at all (or all gone): the run ends now
    }
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
    reply.set_stop_step(next_step_to_serve_);
  }
  for (auto& c : completions) c();
  return reply;
}

std::string RunController::SummaryJson() const {
  JsonObject j;
  j.Add("run_id", options_.run_id)
      .Add("state", StateName(state_))
      .Add("message", message_)
      .Add("model", recipe_.model)
      .Add("optimizer", recipe_.optimizer)
      .Add("workers", static_cast<int64_t>(world_size_))
      .Add("step",
           committed_.empty() ? int64_t{0} : committed_.back().step() + committed_.back().h())
      .Add("total_steps", planner_.total_steps())
      .Add("rounds", static_cast<int64_t>(committed_.size()))
      .Add("bytes_per_worker", bytes_per_worker_)
      .Add("elapsed_s", absl::ToDoubleSeconds(ended_ - started_));
  if (have_eval_) {
    j.Add("test_acc", last_eval_.test_acc()).Add("test_loss", last_eval_.test_loss());
  }
  return j.str();
}

}  // namespace qsr
