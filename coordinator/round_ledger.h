// RoundLedger: the rounds of a run as they are served, reported and committed; the evaluations
// and checkpoints the run recorded; the statistics status reads from them; and every durable
// write of the run: the journal (when there is a state directory) and the run directory's
// rounds.jsonl, evals.jsonl and summary.json (when there is one).
//
// Contract:
//   - Rounds are served in order (Serve): each is journaled before the caller answers with it,
//     and stays pending until it has a report from every member it was served to
//     (CommitReady), or until the generation that trained it ended and the next one resumes
//     after it (ResumeAt). Pending rounds are committed in order, each exactly once: journaled,
//     appended to rounds.jsonl and passed to on_round_committed.
//   - An evaluation or checkpoint is recorded once, the first time its step is reported; later
//     or repeated reports of an earlier step are ignored.
//   - Recover rebuilds the state a journal holds, so a restarted coordinator continues the
//     same ledger.
//   - Journal write errors are logged and the run goes on (the journal is for a restart).
//
// Thread-compatible: the RunController calls it under its lock. on_round_committed runs on the
// calling thread, under that lock.
//
// Lifecycle: created with the run (start_round/start_step: 0, or where a resumed run picks up),
// optionally Recover()ed, and kept until the coordinator exits.
#ifndef QSR_COORDINATOR_ROUND_LEDGER_H_
#define QSR_COORDINATOR_ROUND_LEDGER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/round_planner.h"
#include "coordinator/journal.h"
#include "coordinator/run_log.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

class RoundLedger {
 public:
  struct Options {
    // The first round of the run and its first step: 0, or where a resumed run picks up.
    int64_t start_round = 0;
    int64_t start_step = 0;
    // When the run started (evals.jsonl's elapsed_s).
    absl::Time started;
    // See RunController::Options::on_round_committed. May be empty.
    std::function<void(const v1::RoundRecord&)> on_round_committed;
  };
  // Rounds averaged over for the run's samples/s.
  static constexpr size_t kThroughputWindow = 32;

  // `log` may be null (no run directory), `journal` null (no state directory).
  RoundLedger(Options options, std::unique_ptr<RunLog> log, std::shared_ptr<Journal> journal);

  // Appends to the journal, if there is one.
  void Record(const v1::JournalEntry& entry);
  // Writes summary.json, if there is a run directory.
  void WriteSummary(const std::string& json);
  std::string run_dir() const { return log_ ? log_->dir() : ""; }
  std::string journal_path() const { return journal_ ? journal_->path() : ""; }
  // Takes over what the journal `r` says about rounds, evaluations and checkpoints.
  void Recover(const Journal::Recovered& r);

  // Serving. `expected`: the members the round is served to (its reports to wait for).
  void Serve(const v1::RoundPlan& plan, int expected);
  // Serves the planner's rounds from next_round() on until they add up to at least `min_steps`
  // (or the plan ends); returns them (none: the plan is exhausted).
  std::vector<v1::RoundPlan> ServeBatch(const RoundPlanner& planner, int64_t min_steps,
                                        int expected);
  // The plans served from `round` on that are not committed yet (a retried barrier call).
  std::vector<v1::RoundPlan> PendingFrom(int64_t round) const;
  // A new generation resumes at `round`: the rounds before it are committed with the reports
  // that came (their generation averaged them), the rest are forgotten and served again.
  // INTERNAL when `round` is outside [start_round, next_round].
  absl::Status ResumeAt(int64_t round, int64_t generation);
  int64_t start_round() const { return start_round_; }
  int64_t next_round() const { return next_round_; }
  int64_t next_step() const { return next_step_; }
  // The plan last served (h() == 0: none yet).
  const v1::RoundPlan& current() const { return current_; }

  // Reports. A round report must match the plan it reports on; INVALID_ARGUMENT otherwise, and
  // for a round that is not pending (unless `generation_ended`: then it was committed at the
  // regroup and the report is ignored).
  absl::Status AddRoundReport(const std::string& worker_id, const v1::RoundReport& report,
                              bool generation_ended);
  // False when the evaluation's step was recorded already (nothing changes).
  bool AddEval(const v1::EvalReport& eval, absl::Time now);
  bool AddCheckpoint(const v1::CheckpointReport& checkpoint);
  // Commits the leading pending rounds that have all their reports. `generation`: for the log.
  void CommitReady(int64_t generation);

  // Reads.
  bool nothing_pending() const { return pending_.empty(); }
  size_t pending_count() const { return pending_.size(); }
  const std::vector<v1::RoundRecord>& committed() const { return committed_; }
  // Committed rounds from `from_round` on, at most `limit` of them (0: all).
  v1::ListRoundsReply ListRounds(int64_t from_round, int64_t limit) const;
  int64_t first_uncommitted() const {
    return start_round_ + static_cast<int64_t>(committed_.size());
  }
  // The step after the last committed round; nullopt before any.
  std::optional<int64_t> committed_end_step() const;
  // Over the last kThroughputWindow committed rounds; 0 before any.
  double samples_per_sec() const;
  // A worker's own rate in its last round report; 0 when it never reported one.
  double worker_samples_per_sec(const std::string& worker_id) const;
  int64_t bytes_per_worker() const { return bytes_per_worker_; }
  double train_loss() const { return train_loss_; }
  // The latest evaluation; null before any.
  const v1::EvalReport* last_eval() const { return evals_.empty() ? nullptr : &evals_.back(); }
  const std::vector<v1::EvalReport>& evals() const { return evals_; }
  const std::string& last_checkpoint() const { return last_checkpoint_; }

 private:
  struct PendingRound {
    v1::RoundPlan plan;
    int expected = 0;                                // members when it was served
    std::map<std::string, v1::RoundReport> reports;  // by worker id
  };
  void Commit(const PendingRound& p, int64_t generation);
  // Adds a committed round to the statistics (also for rounds recovered from the journal).
  void Count(const v1::RoundRecord& rec);

  const Options options_;
  std::unique_ptr<RunLog> log_;
  std::shared_ptr<Journal> journal_;

  std::map<int64_t, PendingRound> pending_;  // served, not committed, by round
  const int64_t start_round_;
  int64_t next_round_;
  int64_t next_step_;
  v1::RoundPlan current_;

  std::vector<v1::RoundRecord> committed_;
  int64_t bytes_per_worker_ = 0;
  std::deque<std::pair<int64_t, double>> recent_;  // samples, seconds
  double train_loss_ = 0.0;
  std::map<std::string, double> samples_per_sec_;  // by worker id
  std::vector<v1::EvalReport> evals_;              // one per evaluation (a few per epoch)
  int64_t last_eval_step_ = -1;
  std::string last_checkpoint_;
  int64_t last_checkpoint_step_ = -1;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_ROUND_LEDGER_H_
