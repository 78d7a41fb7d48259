#include "coordinator/round_ledger.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "proto/json/json_line.h"
#include "qsr/v1/run_log.pb.h"

namespace qsr {

RoundLedger::RoundLedger(Options options, std::unique_ptr<RunLog> log,
                         std::shared_ptr<Journal> journal)
    : options_(std::move(options)),
      log_(std::move(log)),
      journal_(std::move(journal)),
      start_round_(options_.start_round),
      next_round_(options_.start_round),
      next_step_(options_.start_step) {}

void RoundLedger::Record(const v1::JournalEntry& entry) {
  if (journal_ == nullptr) return;
  if (absl::Status s = journal_->Append(entry); !s.ok()) LOG(ERROR) << "journal: " << s;
}

void RoundLedger::WriteSummary(const std::string& json) {
  if (!log_) return;
  if (absl::Status s = log_->WriteSummary(json); !s.ok()) LOG(ERROR) << s;
}

void RoundLedger::Recover(const Journal::Recovered& r) {
  for (const v1::RoundRecord& rec : r.committed) {
    committed_.push_back(rec);
    Count(rec);
  }
  for (const v1::EvalReport& e : r.evals) {
    evals_.push_back(e);
    last_eval_step_ = e.step();
  }
  const int64_t first = first_uncommitted();
  for (const v1::RoundPlan& plan : r.served) {
    if (plan.round() >= first) {
      pending_[plan.round()].plan = plan;
      pending_[plan.round()].expected = static_cast<int>(r.members.size());
    }
    next_round_ = std::max(next_round_, plan.round() + 1);
    next_step_ = std::max(next_step_, plan.start_step() + plan.h());
    current_ = plan;
  }
  if (r.last_checkpoint.step() > 0) {
    last_checkpoint_ = r.last_checkpoint.manifest();
    last_checkpoint_step_ = r.last_checkpoint.step();
  }
}

void RoundLedger::Serve(const v1::RoundPlan& plan, int expected) {
  PendingRound& p = pending_[plan.round()];
  p.plan = plan;
  p.expected = expected;
  v1::JournalEntry e;
  *e.mutable_served() = plan;
  Record(e);
  current_ = plan;
  next_round_ = plan.round() + 1;
  next_step_ = plan.start_step() + plan.h();
}

std::vector<v1::RoundPlan> RoundLedger::ServeBatch(const RoundPlanner& planner, int64_t min_steps,
                                                   int expected) {
  std::vector<v1::RoundPlan> served;
  int64_t steps = 0;
  while (steps < min_steps) {
    std::optional<Round> round = planner.RoundAt(next_round_, next_step_);
    if (!round) break;
    v1::RoundPlan plan;
    plan.set_round(round->index);
    plan.set_start_step(round->start_step);
    plan.set_h(round->h);
    plan.set_lr(round->lr);
    plan.set_data_parallel(round->data_parallel);
    plan.set_eval_after(round->eval_after);
    plan.set_checkpoint_after(round->checkpoint_after);
    Serve(plan, expected);
    served.push_back(std::move(plan));
    steps += round->h;
  }
  return served;
}

std::vector<v1::RoundPlan> RoundLedger::PendingFrom(int64_t round) const {
  std::vector<v1::RoundPlan> plans;
  for (auto it = pending_.find(round); it != pending_.end(); ++it) plans.push_back(it->second.plan);
  return plans;
}

absl::Status RoundLedger::ResumeAt(int64_t round, int64_t generation) {
  if (round < start_round_ || round > next_round_) {
    return absl::InternalError(absl::StrCat("cannot resume at round ", round, ": rounds [",
                                            start_round_, ", ", next_round_, ") were served"));
  }
  while (!pending_.empty() && pending_.begin()->first < round) {
    Commit(pending_.begin()->second, generation);
    pending_.erase(pending_.begin());
  }
  if (round < next_round_) {
    next_step_ = pending_.at(round).plan.start_step();
    next_round_ = round;
  }
  pending_.clear();
  return absl::OkStatus();
}

absl::Status RoundLedger::AddRoundReport(const std::string& worker_id, const v1::RoundReport& r,
                                         bool generation_ended) {
  auto it = pending_.find(r.round());
  if (it == pending_.end()) {
    if (generation_ended) return absl::OkStatus();  // committed at the regroup
    return absl::InvalidArgumentError(
        absl::StrCat("round ", r.round(), " was not served or is already committed"));
  }
  const v1::RoundPlan& plan = it->second.plan;
  if (r.start_step() != plan.start_step() || r.h() != plan.h()) {
    return absl::InvalidArgumentError(
        absl::StrCat("round ", r.round(), " report says steps [", r.start_step(), ", +", r.h(),
                     ") but the plan was [", plan.start_step(), ", +", plan.h(), ")"));
  }
  it->second.reports[worker_id] = r;
  if (r.seconds() > 0) samples_per_sec_[worker_id] = r.samples() / r.seconds();
  return absl::OkStatus();
}

bool RoundLedger::AddEval(const v1::EvalReport& e, absl::Time now) {
  if (e.step() <= last_eval_step_) return false;
  last_eval_step_ = e.step();
  evals_.push_back(e);
  v1::JournalEntry entry;
  *entry.mutable_eval() = e;
  Record(entry);
  if (log_) {
    v1::RunLogEval line;
    line.set_step(static_cast<int32_t>(e.step()));
    line.set_epoch(e.epoch());
    line.set_test_loss(e.test_loss());
    line.set_test_acc(e.test_acc());
    line.set_test_acc5(e.test_acc5());
    line.set_examples(static_cast<int32_t>(e.examples()));
    line.set_elapsed_s(absl::ToDoubleSeconds(now - options_.started));
    log_->AppendEval(ToJsonLine(line));
  }
  LOG(INFO) << "eval at step " << e.step() << " (epoch " << e.epoch()
            << "): test_acc=" << e.test_acc() << " test_loss=" << e.test_loss();
  return true;
}

bool RoundLedger::AddCheckpoint(const v1::CheckpointReport& c) {
  if (c.step() <= last_checkpoint_step_) return false;
  last_checkpoint_step_ = c.step();
  last_checkpoint_ = c.manifest();
  v1::JournalEntry entry;
  *entry.mutable_checkpoint() = c;
  Record(entry);
  LOG(INFO) << "checkpoint committed at step " << c.step() << ": " << c.manifest();
  return true;
}

void RoundLedger::CommitReady(int64_t generation) {
  while (!pending_.empty()) {
    auto it = pending_.begin();
    if (static_cast<int>(it->second.reports.size()) < it->second.expected) return;
    Commit(it->second, generation);
    pending_.erase(it);
  }
}

void RoundLedger::Commit(const PendingRound& p, int64_t generation) {
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
  v1::JournalEntry e;
  *e.mutable_committed() = rec;
  Record(e);
  if (options_.on_round_committed) options_.on_round_committed(rec);
  Count(rec);
  if (log_) {
    v1::RunLogRound line;
    line.set_round(static_cast<int32_t>(rec.round()));
    line.set_step(static_cast<int32_t>(rec.step()));
    line.set_lr(rec.lr());
    line.set_h(static_cast<int32_t>(rec.h()));
    line.set_workers(rec.workers());
    line.set_generation(static_cast<int32_t>(generation));
    line.set_bytes(static_cast<double>(rec.bytes()));
    line.set_seconds(rec.seconds());
    line.set_train_loss(rec.train_loss());
    line.set_samples(static_cast<int32_t>(rec.samples()));
    line.set_identical(rec.identical());
    line.set_digest_checked(rec.digest_checked());
    log_->AppendRound(ToJsonLine(line));
  }
}

void RoundLedger::Count(const v1::RoundRecord& rec) {
  bytes_per_worker_ += rec.bytes();
  train_loss_ = rec.train_loss();
  recent_.emplace_back(rec.samples(), rec.seconds());
  if (recent_.size() > kThroughputWindow) recent_.pop_front();
}

v1::ListRoundsReply RoundLedger::ListRounds(int64_t from_round, int64_t limit) const {
  v1::ListRoundsReply reply;
  const int64_t from = std::max<int64_t>(0, from_round - start_round_);
  int64_t end = static_cast<int64_t>(committed_.size());
  if (limit > 0) end = std::min(end, from + limit);
  for (int64_t i = from; i < end; ++i) *reply.add_rounds() = committed_[i];
  return reply;
}

std::optional<int64_t> RoundLedger::committed_end_step() const {
  if (committed_.empty()) return std::nullopt;
  return committed_.back().step() + committed_.back().h();
}

double RoundLedger::samples_per_sec() const {
  int64_t samples = 0;
  double seconds = 0;
  for (const auto& [n, sec] : recent_) {
    samples += n;
    seconds += sec;
  }
  return seconds > 0 ? samples / seconds : 0.0;
}

double RoundLedger::worker_samples_per_sec(const std::string& worker_id) const {
  auto it = samples_per_sec_.find(worker_id);
  return it == samples_per_sec_.end() ? 0.0 : it->second;
}

}  // namespace qsr
