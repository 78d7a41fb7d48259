#include "coordinator/run_controller.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_writer.h"
#include "glog/logging.h"

namespace qsr {
namespace {

// Rounds averaged over for samples/s.
constexpr size_t kThroughputWindow = 32;
// A worker waiting to join that has not asked again for this long is gone.
constexpr absl::Duration kJoinerGrace = absl::Seconds(10);

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

}  // namespace

RunController::RunController(const Recipe& recipe, Options options, std::unique_ptr<RunLog> log,
                             std::shared_ptr<Journal> journal, const Journal::Recovered& recovered)
    : recipe_(recipe),
      recipe_yaml_(RecipeToYaml(recipe_)),
      options_(std::move(options)),
      planner_(recipe),
      world_size_(static_cast<int>(recipe.workers)),
      started_(absl::Now()),
      log_(std::move(log)),
      journal_(std::move(journal)),
      membership_(MembershipOptions(recipe_, options_)) {
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
  absl::MutexLock lock(&mu_);
  if (recovered.exists) {
    Recover(recovered);
  } else {
    v1::JournalEntry e;
    e.mutable_started()->set_run_id(options_.run_id);
    e.mutable_started()->set_recipe_yaml(recipe_yaml_);
    Record(e);
  }
}

void RunController::Record(const v1::JournalEntry& entry) {
  if (journal_ == nullptr) return;
  if (absl::Status s = journal_->Append(entry); !s.ok()) LOG(ERROR) << "journal: " << s;
}

void RunController::Recover(const Journal::Recovered& r) {
  const absl::Time now = absl::Now();
  for (const v1::RoundRecord& rec : r.committed) {
    committed_.push_back(rec);
    bytes_per_worker_ += rec.bytes();
    train_loss_ = rec.train_loss();
    recent_.emplace_back(rec.samples(), rec.seconds());
    if (recent_.size() > kThroughputWindow) recent_.pop_front();
  }
  for (const v1::EvalReport& e : r.evals) {
    evals_.push_back(e);
    last_eval_ = e;
    last_eval_step_ = e.step();
    have_eval_ = true;
  }
  const int64_t first_uncommitted = start_round_ + static_cast<int64_t>(committed_.size());
  for (const v1::RoundPlan& plan : r.served) {
    if (plan.round() >= first_uncommitted) {
      pending_[plan.round()].plan = plan;
      pending_[plan.round()].expected = static_cast<int>(r.members.size());
    }
    next_round_to_serve_ = std::max(next_round_to_serve_, plan.round() + 1);
    next_step_to_serve_ = std::max(next_step_to_serve_, plan.start_step() + plan.h());
    current_ = plan;
  }
  if (r.last_checkpoint.step() > 0) {
    last_checkpoint_ = r.last_checkpoint.manifest();
    last_checkpoint_step_ = r.last_checkpoint.step();
  }
  if (r.ended) {
    state_ = r.end.state() == "FAILED" ? State::kFailed : State::kFinished;
    message_ = r.end.message();
    ended_ = now;
  } else if (r.generation > 0) {
    state_ = State::kRunning;
    membership_.Recover(r.generation, r.members, now);
  }
  LOG(INFO) << "recovered run " << r.run_id << " from " << journal_->path() << ": "
            << committed_.size() << " rounds committed, " << pending_.size()
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
  reply.set_start_round(next_round_to_serve_);
  reply.set_start_step(next_step_to_serve_);
  reply.set_rendezvous_timeout_ms(rendezvous_timeout_ms());
  reply.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  return reply;
}

absl::Status RunController::Join(const v1::JoinRequest& request, absl::Time now,
                                 absl::Time poll_deadline, JoinCallback done) {
  if (request.worker_id().empty() || request.worker_id().size() > 256) {
    return absl::InvalidArgumentError("worker_id must be 1 to 256 bytes");
  }
  if (request.host().size() > 256 || request.device().size() > 64) {
    return absl::InvalidArgumentError("host (256) or device (64 bytes) too long");
  }
  if (request.next_round() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("next_round ", request.next_round(), " must be >= 0 (0: a fresh worker)"));
  }
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    if (request.next_round() > next_round_to_serve_) {
      return absl::InvalidArgumentError(
          absl::StrCat("next_round ", request.next_round(),
                       " was never served (rounds so far: ", next_round_to_serve_, ")"));
    }
    auto refuse = [&](v1::Outcome::Code code, const std::string& message) {
      v1::JoinReply reply;
      reply.set_run_id(options_.run_id);
      *reply.mutable_outcome() = MakeOutcome(code, message);
      completions.push_back([done, reply] { done(reply); });
    };
    if (state_ == State::kFinished || state_ == State::kFailed) {
      refuse(v1::Outcome::RUN_FINISHED,
             absl::StrCat("run is ", StateName(), message_.empty() ? "" : ": " + message_));
    } else if (stop_requested_) {
      refuse(v1::Outcome::RUN_FINISHED, absl::StrCat("run is stopping: ", kStoppedByOperator));
    } else {
      const bool was_forming = membership_.forming();
      switch (membership_.Join(request.worker_id(), request.host(), request.device(),
                               request.next_round(), request.failed_generation(), now,
                               request.incarnation())) {
        case Membership::JoinResult::kFull:
          refuse(v1::Outcome::REJECTED,
                 absl::StrCat("run is full: it has its maximum of ",
                              recipe_.max_workers > 0 ? recipe_.max_workers : recipe_.workers,
                              " workers"));
          break;
        case Membership::JoinResult::kAlreadyMember: {
          // A retried Join (the reply was lost, or its poll ended just as the group formed).
          for (const Membership::Member& m : membership_.members()) {
            if (m.worker_id == request.worker_id()) {
              v1::JoinReply reply = MemberReply(m.rank);
              completions.push_back([done, reply] { done(reply); });
            }
          }
          break;
        }
        case Membership::JoinResult::kJoining: {
          if (!was_forming && membership_.forming()) {
            // The caller reported that its group broke: release the barrier too.
            ++failures_;
            EndGeneration(membership_.end_reason(), {}, now, &completions);
          }
          auto old = join_waiters_.find(request.worker_id());
          if (old != join_waiters_.end()) {
            v1::JoinReply superseded;
            *superseded.mutable_outcome() =
                MakeOutcome(v1::Outcome::TIMEOUT, "superseded by a newer Join");
            completions.push_back(
                [cb = std::move(old->second.done), superseded] { cb(superseded); });
          }
          join_waiters_[request.worker_id()] = JoinWaiter{poll_deadline, std::move(done)};
          LOG(INFO) << "worker " << request.worker_id() << " (" << request.host() << ", "
                    << request.device() << ", ready for round " << request.next_round()
                    << ") asks to join";
          MaybeForm(now, &completions);
          break;
        }
      }
    }
  }
  for (auto& c : completions) c();
  return absl::OkStatus();
}

absl::StatusOr<v1::JoinReply> RunController::JoinNow(const v1::JoinRequest& request,
                                                     absl::Time now) {
  std::optional<v1::JoinReply> got;
  absl::Status s = Join(request, now, now, [&got](const v1::JoinReply& r) { got = r; });
  if (!s.ok()) return s;
  if (!got) {
    // Still waiting for its generation: the poll ends now.
    Tick(now);
  }
  if (!got) return absl::InternalError("Join did not answer");
  return *got;
}

void RunController::MaybeForm(absl::Time now, std::vector<Completion>* completions) {
  if (state_ == State::kFinished || state_ == State::kFailed) return;
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
      for (auto& c : Fail(*why)) completions->push_back(std::move(c));
    }
    return;
  }
  if (membership_.generation() > 1) {
    ++regroups_;
    // A fresh worker (0) holds the initial model, the state of the run's first round.
    const int64_t resume = std::max(membership_.formed_next_round(), start_round_);
    const int64_t committed = start_round_ + static_cast<int64_t>(committed_.size());
    if (resume < committed) {
      // Nobody holds the state of the rounds trained so far: there is nothing to continue from.
      ++failures_;
      for (auto& c :
           Fail(absl::StrCat("no surviving worker holds the model after round ", committed - 1,
                             " (every worker that trained it has "
                             "failed); resume from the last checkpoint"))) {
        completions->push_back(std::move(c));
      }
      return;
    }
    if (absl::Status s = ResumeAt(resume); !s.ok()) {
      for (auto& c : Fail(std::string(s.message()))) completions->push_back(std::move(c));
      return;
    }
  }
  state_ = State::kRunning;
  {
    v1::JournalEntry e;
    e.mutable_generation()->set_generation(membership_.generation());
    for (const Membership::Member& m : membership_.members()) {
      e.mutable_generation()->add_members(m.worker_id);
    }
    Record(e);
  }
  for (const Membership::Member& m : membership_.members()) {
    auto it = join_waiters_.find(m.worker_id);
    if (it == join_waiters_.end()) continue;
    v1::JoinReply reply = MemberReply(m.rank);
    completions->push_back([cb = std::move(it->second.done), reply] { cb(reply); });
    join_waiters_.erase(it);
  }
  LOG(INFO) << "generation " << membership_.generation() << ": " << membership_.members().size()
            << " workers resume at round " << next_round_to_serve_ << " (step "
            << next_step_to_serve_ << ")";
}

absl::Status RunController::ResumeAt(int64_t round) {
  if (round < start_round_ || round > next_round_to_serve_) {
    return absl::InternalError(absl::StrCat("cannot resume at round ", round, ": rounds [",
                                            start_round_, ", ", next_round_to_serve_,
                                            ") were served"));
  }
  // Rounds before `round` were averaged by the group that ended: commit them with the reports
  // that came. The rest are planned again for the new group.
  while (!pending_.empty() && pending_.begin()->first < round) {
    Commit(pending_.begin()->second);
    pending_.erase(pending_.begin());
  }
  if (round < next_round_to_serve_) {
    next_step_to_serve_ = pending_.at(round).plan.start_step();
    next_round_to_serve_ = round;
  }
  pending_.clear();
  barrier_round_ = -1;
  return absl::OkStatus();
}

void RunController::ReleaseWaiters(v1::NextRoundsReply reply,
                                   std::vector<Completion>* completions) {
  auto shared = std::make_shared<const v1::NextRoundsReply>(std::move(reply));
  for (const std::shared_ptr<BarrierCall>& call : waiters_) {
    // A call with co-members sits in several slots: it is answered at the first.
    if (!call || !call->done) continue;
    completions->push_back([cb = std::move(call->done), shared] { cb(*shared); });
    call->done = nullptr;
  }
  waiters_.clear();
  waiting_ = 0;
  barrier_round_ = -1;
}

void RunController::MaybeReleaseBarrier(absl::Time now, std::vector<Completion>* completions) {
  if (barrier_round_ < 0 || waiting_ == 0 || waiting_ < membership_.active_members()) return;
  if (membership_.admission_pending()) {
    // A round boundary: the group re-forms with the workers waiting to join. Everyone holds the
    // state of the round just finished.
    EndGeneration(absl::StrCat("admitting ", membership_.joiners().size(), " worker(s)"), {}, now,
                  completions);
  } else {
    ReleaseWaiters(PlanBatch(barrier_round_), completions);
  }
}

void RunController::EndGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                                  absl::Time now, std::vector<Completion>* completions) {
  membership_.EndGeneration(reason, failed_ranks, now);
  v1::NextRoundsReply ended;
  *ended.mutable_outcome() = MakeOutcome(
      v1::Outcome::GENERATION_ENDED,
      absl::StrCat("generation ", membership_.generation(), " ended: ", membership_.end_reason()));
  ReleaseWaiters(std::move(ended), completions);
  MaybeForm(now, completions);
}

absl::StatusOr<Membership::Standing> RunController::CheckMember(const std::string& worker_id,
                                                                int rank, int64_t generation,
                                                                absl::Time now) {
  return membership_.Check(worker_id, rank, generation, now);
}

absl::StatusOr<Membership::Standing> RunController::CheckMembers(
    const std::string& worker_id, int rank, int64_t generation,
    const google::protobuf::RepeatedPtrField<v1::CoMember>& co_members, absl::Time now) {
  absl::StatusOr<Membership::Standing> standing = CheckMember(worker_id, rank, generation, now);
  if (!standing.ok()) return standing;
  for (const v1::CoMember& m : co_members) {
    // Ranks within one call are distinct (request_validator); each must be a member of the
    // caller's generation, standing as the caller does.
    absl::StatusOr<Membership::Standing> co = CheckMember(m.worker_id(), m.rank(), generation, now);
    if (!co.ok()) return co;
    if (*co != *standing) {
      return absl::FailedPreconditionError(
          absl::StrCat("co-member rank ", m.rank(), " and the caller (rank ", rank,
                       ") do not stand alike in generation ", generation));
    }
  }
  return standing;
}

absl::StatusOr<v1::HeartbeatReply> RunController::Heartbeat(const v1::HeartbeatRequest& request,
                                                            absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<Membership::Standing> standing = CheckMembers(
      request.worker_id(), request.rank(), request.generation(), request.co_members(), now);
  if (!standing.ok()) return standing.status();
  v1::HeartbeatReply reply;
  if (state_ == State::kFailed || state_ == State::kFinished) {
    *reply.mutable_outcome() =
        MakeOutcome(state_ == State::kFailed ? v1::Outcome::RUN_FAILED : v1::Outcome::RUN_FINISHED,
                    absl::StrCat("run is ", StateName(), ": ", message_));
  } else if (*standing == Membership::Standing::kEnded) {
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::GENERATION_ENDED,
                                           absl::StrCat("generation ", request.generation(),
                                                        " has ended: ", membership_.end_reason()));
  } else {
    *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  }
  return reply;
}

absl::Status RunController::NextRounds(const v1::NextRoundsRequest& request, absl::Time now,
                                       NextRoundsCallback done) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Membership::Standing> standing = CheckMembers(
        request.worker_id(), request.rank(), request.generation(), request.co_members(), now);
    if (!standing.ok()) return standing.status();
    auto answer = [&](v1::Outcome::Code code, const std::string& message) {
      v1::NextRoundsReply reply;
      *reply.mutable_outcome() = MakeOutcome(code, message);
      completions.push_back([cb = std::move(done), reply] { cb(reply); });
    };
    if (state_ == State::kFailed || state_ == State::kFinished) {
      answer(state_ == State::kFailed ? v1::Outcome::RUN_FAILED : v1::Outcome::RUN_FINISHED,
             absl::StrCat("run is ", StateName(), ": ", message_));
    } else if (*standing == Membership::Standing::kEnded) {
      answer(v1::Outcome::GENERATION_ENDED, absl::StrCat("generation ", request.generation(),
                                                         " has ended: ", membership_.end_reason()));
    } else if (stop_requested_) {
      // Every round handed out has been trained by this worker: it may leave.
      answer(v1::Outcome::RUN_FINISHED, kStoppedByOperator);
    } else {
      if (request.next_round() < 0 || request.next_round() > next_round_to_serve_) {
        return absl::InvalidArgumentError(absl::StrCat("next_round ", request.next_round(),
                                                       " is out of range [0, ",
                                                       next_round_to_serve_, "]"));
      }
      if (barrier_round_ < 0) {
        barrier_round_ = request.next_round();
        barrier_deadline_ = now + options_.round_timeout;
      } else if (barrier_round_ != request.next_round()) {
        return absl::FailedPreconditionError(
            absl::StrCat("rank ", request.rank(), " asks for round ", request.next_round(),
                         " while the group is at round ", barrier_round_));
      }
      // CheckMember answered kCurrent: the ranks are this generation's.
      auto call = std::make_shared<BarrierCall>();
      call->done = std::move(done);
      call->ranks.reserve(1 + request.co_members_size());
      call->ranks.push_back(request.rank());
      for (const v1::CoMember& m : request.co_members()) call->ranks.push_back(m.rank());
      if (waiters_.size() < membership_.members().size()) {
        waiters_.resize(membership_.members().size());
      }
      for (int rank : call->ranks) {
        std::shared_ptr<BarrierCall> old = waiters_[static_cast<size_t>(rank)];
        if (!old) continue;
        // A rank already waiting asks again when its call timed out on its side (or its
        // connection dropped): the newer call replaces the older one, with every rank the older
        // one carried (those ask again when it is answered TIMEOUT).
        for (int r : old->ranks) {
          waiters_[static_cast<size_t>(r)] = nullptr;
          --waiting_;
        }
        v1::NextRoundsReply superseded;
        *superseded.mutable_outcome() =
            MakeOutcome(v1::Outcome::TIMEOUT, "superseded by a newer NextRounds call");
        completions.push_back([cb = std::move(old->done), superseded] { cb(superseded); });
      }
      for (int rank : call->ranks) waiters_[static_cast<size_t>(rank)] = call;
      waiting_ += static_cast<int>(call->ranks.size());
      MaybeReleaseBarrier(now, &completions);
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
    const bool ends_run = round->end_step() == planner_.total_steps();
    plan.set_eval_after(round->end_step() / spe != round->start_step / spe || ends_run);
    // A checkpoint after every round that reaches a multiple of save_freq epochs, and at the end.
    const int64_t sf = recipe_.save_freq;
    plan.set_checkpoint_after(
        sf > 0 && (ends_run || round->end_step() / spe / sf > round->start_step / spe / sf));
    pending_[round->index].plan = plan;
    pending_[round->index].expected = membership_.active_members();
    v1::JournalEntry e;
    *e.mutable_served() = plan;
    Record(e);
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
  // Reports of an ended generation are still welcome: survivors flush them before joining again.
  absl::StatusOr<Membership::Standing> standing =
      CheckMember(request.worker_id(), request.rank(), request.generation(), now);
  if (!standing.ok()) return standing.status();
  for (const v1::RoundReport& r : request.rounds()) {
    auto it = pending_.find(r.round());
    if (it == pending_.end()) {
      if (*standing == Membership::Standing::kEnded) continue;  // committed at the regroup
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
    it->second.reports[request.worker_id()] = r;
    if (r.seconds() > 0) samples_per_sec_[request.worker_id()] = r.samples() / r.seconds();
  }
  for (const v1::EvalReport& e : request.evals()) {
    // Every rank computes the same evaluation (sums are all-reduced); rank 0 reports it.
    if (request.rank() != 0 || e.step() <= last_eval_step_) continue;
    last_eval_step_ = e.step();
    last_eval_ = e;
    have_eval_ = true;
    evals_.push_back(e);
    {
      v1::JournalEntry entry;
      *entry.mutable_eval() = e;
      Record(entry);
    }
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
  for (const v1::CheckpointReport& c : request.checkpoints()) {
    // Rank 0 writes the manifest once every worker has written its part.
    if (request.rank() != 0 || c.step() <= last_checkpoint_step_) continue;
    if (c.manifest().empty() || c.manifest().size() > 4096) {
      return absl::InvalidArgumentError("checkpoint manifest path must be 1 to 4096 bytes");
    }
    last_checkpoint_step_ = c.step();
    last_checkpoint_ = c.manifest();
    v1::JournalEntry entry;
    *entry.mutable_checkpoint() = c;
    Record(entry);
    LOG(INFO) << "checkpoint committed at step " << c.step() << ": " << c.manifest();
  }
  CommitReadyRounds();
  v1::ReportReply reply;
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  return reply;
}

void RunController::CommitReadyRounds() {
  while (!pending_.empty()) {
    auto it = pending_.begin();
    if (static_cast<int>(it->second.reports.size()) < it->second.expected) return;
    Commit(it->second);
    pending_.erase(it);
  }
}

void RunController::Commit(const PendingRound& p) {
  v1::RoundRecord rec;
  rec.set_round(p.plan.round());
  rec.set_step(p.plan.start_step());
  rec.set_lr(p.plan.lr());
  rec.set_h(p.plan.h());
  const int workers = static_cast<int>(p.reports.size());
  rec.set_workers(workers);
  double loss = 0, seconds = 0;
  int64_t bytes = 0, samples = 0;
  // A worker that ends a round synced reports a digest (0 means none); every member decides
  // that from the same plan, so a round where only some report one is a mismatch too.
  const uint64_t digest = workers > 0 ? p.reports.begin()->second.params_digest() : 0;
  bool identical = true;
  int with_digest = 0;
  for (const auto& [id, r] : p.reports) {
    identical = identical && r.params_digest() == digest;
    with_digest += r.params_digest() != 0 ? 1 : 0;
    loss += r.train_loss();
    seconds = std::max(seconds, r.seconds());
    bytes = std::max(bytes, r.bytes_sent());
    samples += r.samples();
  }
  rec.set_train_loss(workers > 0 ? loss / workers : 0.0);
  rec.set_seconds(seconds);
  rec.set_bytes(bytes);
  rec.set_samples(samples);
  rec.set_identical(identical);
  rec.set_digest_checked(with_digest > 0);
  if (identical && with_digest > 0) rec.set_params_digest(digest);
  if (!identical) LOG(ERROR) << "round " << rec.round() << ": workers' parameters differ";
  if (workers < p.expected) {
    LOG(WARNING) << "round " << rec.round() << " committed with " << workers << " of " << p.expected
                 << " reports (its group ended)";
  }
  committed_.push_back(rec);
  {
    v1::JournalEntry e;
    *e.mutable_committed() = rec;
    Record(e);
  }
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
                          .Add("generation", membership_.generation())
                          .Add("bytes", rec.bytes())
                          .Add("seconds", rec.seconds())
                          .Add("train_loss", rec.train_loss())
                          .Add("samples", rec.samples())
                          .Add("identical", rec.identical())
                          .Add("digest_checked", rec.digest_checked())
                          .str());
  }
}

absl::StatusOr<v1::LeaveReply> RunController::Leave(const v1::LeaveRequest& request,
                                                    absl::Time now) {
  std::vector<Completion> completions;
  v1::LeaveReply reply;
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::OK, "");
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<Membership::Standing> standing =
        CheckMember(request.worker_id(), request.rank(), request.generation(), now);
    if (!standing.ok()) return standing.status();
    membership_.DropJoiner(request.worker_id());
    if (auto waiting = join_waiters_.find(request.worker_id()); waiting != join_waiters_.end()) {
      // A Join of the same worker id still waits (e.g. a restarted process while the old one
      // leaves): it is answered, never dropped, so that its RPC completes.
      v1::JoinReply left;
      *left.mutable_outcome() =
          MakeOutcome(v1::Outcome::REJECTED, "worker " + request.worker_id() + " left the run");
      completions.push_back([cb = std::move(waiting->second.done), left] { cb(left); });
      join_waiters_.erase(waiting);
    }
    const bool ended = state_ == State::kFinished || state_ == State::kFailed;
    if (*standing == Membership::Standing::kEnded || ended) {
      // A worker of an ended generation (or of an ended run) gives up: do not wait for it.
      if (request.generation() == membership_.generation()) membership_.MarkLeft(request.rank());
      if (!ended) MaybeForm(now, &completions);
    } else if (!request.error().empty()) {
      ++failures_;
      EndGeneration(absl::StrCat("rank ", request.rank(), " failed: ", request.error()),
                    {request.rank()}, now, &completions);
    } else if (!plan_exhausted_ && next_round_to_serve_ > start_round_) {
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

std::vector<RunController::Completion> RunController::Fail(const std::string& message) {
  std::vector<Completion> completions;
  if (state_ == State::kFailed || state_ == State::kFinished) return completions;
  LOG(ERROR) << "run failed: " << message;
  state_ = State::kFailed;
  message_ = message;
  ended_ = absl::Now();
  v1::NextRoundsReply reply;
  *reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FAILED, "run failed: " + message);
  ReleaseWaiters(std::move(reply), &completions);
  v1::JoinReply join_reply;
  join_reply.set_run_id(options_.run_id);
  *join_reply.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FAILED, "run failed: " + message);
  for (auto& [id, w] : join_waiters_) {
    completions.push_back([cb = std::move(w.done), join_reply] { cb(join_reply); });
  }
  join_waiters_.clear();
  RecordEnd();
  return completions;
}

void RunController::MaybeFinish(std::vector<Completion>* completions) {
  if (membership_.active_members() > 0) return;
  // A stopped run may end before it ever ran (WAITING).
  const bool formed = !membership_.forming() || (state_ == State::kWaiting && stop_requested_);
  if (!formed) return;
  const bool rendezvous_only = state_ == State::kRunning && next_round_to_serve_ == start_round_;
  if ((state_ == State::kRunning || state_ == State::kWaiting) &&
      (plan_exhausted_ || rendezvous_only)) {
    if (rendezvous_only && !plan_exhausted_) message_ = kRendezvousOnly;
    Finish(completions);
  }
}

bool RunController::EveryRoundCommitted() const {
  return pending_.empty() && !committed_.empty() &&
         (plan_exhausted_ || !planner_.RoundAt(next_round_to_serve_, next_step_to_serve_));
}

void RunController::Finish(std::vector<Completion>* completions) {
  CommitReadyRounds();
  state_ = State::kFinished;
  ended_ = absl::Now();
  // A call still waiting at the barrier (its worker left meanwhile) is answered too.
  v1::NextRoundsReply finished;
  *finished.mutable_outcome() = MakeOutcome(v1::Outcome::RUN_FINISHED, "the run has finished");
  ReleaseWaiters(std::move(finished), completions);
  if (stop_requested_) message_ = kStoppedByOperator;
  LOG(INFO) << "run finished" << (stop_requested_ ? " (stopped by operator)" : "") << ": "
            << committed_.size() << " rounds";
  RecordEnd();
}

void RunController::RecordEnd() {
  v1::JournalEntry e;
  e.mutable_ended()->set_state(StateName());
  e.mutable_ended()->set_message(message_);
  Record(e);
  if (log_) {
    if (absl::Status s = log_->WriteSummary(SummaryJson()); !s.ok()) LOG(ERROR) << s;
  }
}

void RunController::Tick(absl::Time now) {
  std::vector<Completion> completions;
  {
    absl::MutexLock lock(&mu_);
    const bool ended = state_ == State::kFinished || state_ == State::kFailed;
    if (ended) {
      // Nobody will tell a dead worker that the run is over: stop waiting for it.
      membership_.FailSilent(now);
    } else if (state_ == State::kRunning && !membership_.forming()) {
      if (std::vector<int> expired = membership_.Expired(now); !expired.empty()) {
        ++failures_;
        EndGeneration(
            absl::StrCat("rank(s) ", absl::StrJoin(expired, ","), " missed heartbeats for ",
                         absl::FormatDuration(options_.heartbeat_timeout)),
            expired, now, &completions);
      } else if (barrier_round_ >= 0 && now >= barrier_deadline_) {
        std::vector<int> stragglers;
        for (const Membership::Member& m : membership_.members()) {
          const bool waiting =
              m.rank < static_cast<int>(waiters_.size()) && waiters_[m.rank] != nullptr;
          if (m.active() && !waiting) stragglers.push_back(m.rank);
        }
        ++failures_;
        EndGeneration(absl::StrCat("straggler rank(s) ", absl::StrJoin(stragglers, ","),
                                   " did not reach round ", barrier_round_, " within ",
                                   absl::FormatDuration(options_.round_timeout)),
                      stragglers, now, &completions);
      }
    }
    // Join polls that ran out are answered TIMEOUT (the worker asks again); joiners that stopped
    // asking are forgotten.
    for (auto it = join_waiters_.begin(); it != join_waiters_.end();) {
      if (now < it->second.poll_deadline) {
        ++it;
        continue;
      }
      v1::JoinReply reply;
      reply.set_run_id(options_.run_id);
      *reply.mutable_outcome() = MakeOutcome(
          v1::Outcome::TIMEOUT,
          absl::StrCat("generation ", membership_.generation() + 1, " has not formed yet (",
                       membership_.joiners().size(), " workers waiting)"));
      completions.push_back([cb = std::move(it->second.done), reply] { cb(reply); });
      membership_.TouchJoiner(it->first, now);
      it = join_waiters_.erase(it);
    }
    std::vector<std::string> stale;
    for (const Membership::Member& j : membership_.joiners()) {
      if (!join_waiters_.count(j.worker_id) && now - j.last_seen > kJoinerGrace) {
        stale.push_back(j.worker_id);
      }
    }
    for (const std::string& id : stale) membership_.DropJoiner(id);
    if (!ended && membership_.forming()) MaybeForm(now, &completions);
  }
  for (auto& c : completions) c();
}

bool RunController::DoneLocked() const {
  return (state_ == State::kFinished || state_ == State::kFailed) &&
         membership_.active_members() == 0 && join_waiters_.empty();
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

v1::GetStatusReply RunController::Status(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  v1::GetStatusReply s;
  s.set_run_id(options_.run_id);
  s.set_state(StateName());
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
  s.set_workers(membership_.active_members());
  s.set_world_size(membership_.forming() && state_ == State::kWaiting
                       ? world_size_
                       : static_cast<int>(membership_.members().size()));
  s.set_generation(membership_.generation());
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
  s.set_last_checkpoint(last_checkpoint_);
  auto add = [&](const Membership::Member& m, const char* state, int rank) {
    v1::WorkerInfo* w = s.add_worker_info();
    w->set_rank(rank);
    w->set_worker_id(m.worker_id);
    w->set_host(m.host);
    w->set_device(m.device);
    w->set_state(state);
    w->set_last_seen_s(absl::ToDoubleSeconds(now - m.last_seen));
    auto sps = samples_per_sec_.find(m.worker_id);
    w->set_samples_per_sec(sps == samples_per_sec_.end() ? 0.0 : sps->second);
  };
  for (const Membership::Member& m : membership_.members()) {
    add(m, m.left ? "LEFT" : m.failed ? "FAILED" : "ACTIVE", m.rank);
  }
  for (const Membership::Member& j : membership_.joiners()) add(j, "JOINING", -1);
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
          absl::StrCat("run is already ", StateName(), message_.empty() ? "" : ": " + message_));
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
      ReleaseWaiters(std::move(finished), &completions);
      v1::JoinReply join_reply;
      join_reply.set_run_id(options_.run_id);
      *join_reply.mutable_outcome() = MakeOutcome(
          v1::Outcome::RUN_FINISHED, absl::StrCat("run is stopping: ", kStoppedByOperator));
      for (auto& [id, w] : join_waiters_) {
        completions.push_back([cb = std::move(w.done), join_reply] { cb(join_reply); });
        membership_.DropJoiner(id);
      }
      join_waiters_.clear();
      MaybeFinish(&completions);  // no member at all (or all gone): the run ends now
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
      .Add("state", StateName())
      .Add("message", message_)
      .Add("model", recipe_.model)
      .Add("optimizer", recipe_.optimizer)
      .Add("workers", static_cast<int64_t>(world_size_))
      .Add("generation", membership_.generation())
      .Add("regroups", regroups_)
      .Add("failures", failures_)
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
