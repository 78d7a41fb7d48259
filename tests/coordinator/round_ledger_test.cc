// RoundLedger on its own: serving, reports, commits, regroups, evaluations, checkpoints, the
// statistics, and the journal and run directory it writes (read back as a restart reads them).
#include "coordinator/round_ledger.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/round_planner.h"
#include "gtest/gtest.h"
#include "proto/json/json_line.h"
#include "qsr/v1/run_log.pb.h"
#include "tests/coordinator/test_recipe.h"

namespace qsr {
namespace {

v1::RoundPlan Plan(int64_t round, int64_t start_step, int64_t h) {
  v1::RoundPlan p;
  p.set_round(round);
  p.set_start_step(start_step);
  p.set_h(h);
  p.set_lr(0.1);
  return p;
}

v1::RoundReport Report(const v1::RoundPlan& plan, double loss, double seconds, int64_t samples,
                       int64_t bytes, uint64_t digest = 0) {
  v1::RoundReport r;
  r.set_round(plan.round());
  r.set_start_step(plan.start_step());
  r.set_h(plan.h());
  r.set_train_loss(loss);
  r.set_seconds(seconds);
  r.set_samples(samples);
  r.set_bytes_sent(bytes);
  r.set_params_digest(digest);
  return r;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class RoundLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/ledger_" + std::to_string(absl::ToUnixNanos(absl::Now()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  RoundLedger::Options LedgerOptions() {
    RoundLedger::Options o;
    o.started = absl::Now();
    o.on_round_committed = [this](const v1::RoundRecord& r) { seen_.push_back(r.round()); };
    return o;
  }

  std::string dir_;
  std::vector<int64_t> seen_;  // rounds passed to on_round_committed
};

TEST_F(RoundLedgerTest, ServesInOrderAndCommitsOnceEveryMemberReported) {
  RoundLedger ledger(LedgerOptions(), nullptr, nullptr);
  ledger.Serve(Plan(0, 0, 4), 2);
  ledger.Serve(Plan(1, 4, 6), 2);
  EXPECT_EQ(ledger.next_round(), 2);
  EXPECT_EQ(ledger.next_step(), 10);
  EXPECT_EQ(ledger.current().round(), 1);
  EXPECT_EQ(ledger.pending_count(), 2u);

  ASSERT_TRUE(ledger.AddRoundReport("w0", Report(Plan(0, 0, 4), 1.0, 2.0, 40, 100), false).ok());
  ledger.CommitReady(1);
  EXPECT_TRUE(ledger.committed().empty());  // w1 has not reported round 0
  // Round 1 complete before round 0: still nothing, rounds commit in order.
  ASSERT_TRUE(ledger.AddRoundReport("w0", Report(Plan(1, 4, 6), 0.5, 1.0, 60, 10), false).ok());
  ASSERT_TRUE(ledger.AddRoundReport("w1", Report(Plan(1, 4, 6), 0.7, 1.0, 60, 10), false).ok());
  ledger.CommitReady(1);
  EXPECT_TRUE(ledger.committed().empty());
  ASSERT_TRUE(ledger.AddRoundReport("w1", Report(Plan(0, 0, 4), 3.0, 4.0, 40, 300), false).ok());
  ledger.CommitReady(1);
  ASSERT_EQ(ledger.committed().size(), 2u);
  EXPECT_EQ(seen_, (std::vector<int64_t>{0, 1}));
  const v1::RoundRecord& r0 = ledger.committed()[0];
  EXPECT_EQ(r0.workers(), 2);
  EXPECT_DOUBLE_EQ(r0.train_loss(), 2.0);  // the mean
  EXPECT_DOUBLE_EQ(r0.seconds(), 4.0);     // the slowest
  EXPECT_EQ(r0.bytes(), 300);              // the most any worker sent
  EXPECT_EQ(r0.samples(), 80);             // the sum
  EXPECT_FALSE(r0.digest_checked());
  EXPECT_TRUE(ledger.nothing_pending());
  EXPECT_EQ(ledger.first_uncommitted(), 2);
  EXPECT_EQ(ledger.committed_end_step(), 10);
  EXPECT_EQ(ledger.bytes_per_worker(), 310);
  EXPECT_DOUBLE_EQ(ledger.train_loss(), 0.6);
  EXPECT_DOUBLE_EQ(ledger.samples_per_sec(), 200.0 / 5.0);
  EXPECT_DOUBLE_EQ(ledger.worker_samples_per_sec("w1"), 10.0);  // its last report: round 0
  EXPECT_DOUBLE_EQ(ledger.worker_samples_per_sec("nobody"), 0.0);
}

TEST_F(RoundLedgerTest, DigestsThatDifferOrAreMissingForSomeAreAMismatch) {
  RoundLedger ledger(LedgerOptions(), nullptr, nullptr);
  for (int64_t round = 0; round < 3; ++round) ledger.Serve(Plan(round, 2 * round, 2), 2);
  const uint64_t d = 0xabc;
  ASSERT_TRUE(ledger.AddRoundReport("w0", Report(Plan(0, 0, 2), 1, 1, 1, 1, d), false).ok());
  ASSERT_TRUE(ledger.AddRoundReport("w1", Report(Plan(0, 0, 2), 1, 1, 1, 1, d), false).ok());
  ASSERT_TRUE(ledger.AddRoundReport("w0", Report(Plan(1, 2, 2), 1, 1, 1, 1, d), false).ok());
  ASSERT_TRUE(ledger.AddRoundReport("w1", Report(Plan(1, 2, 2), 1, 1, 1, 1, d + 1), false).ok());
  ASSERT_TRUE(ledger.AddRoundReport("w0", Report(Plan(2, 4, 2), 1, 1, 1, 1, d), false).ok());
  ASSERT_TRUE(ledger.AddRoundReport("w1", Report(Plan(2, 4, 2), 1, 1, 1, 1, 0), false).ok());
  ledger.CommitReady(1);
  ASSERT_EQ(ledger.committed().size(), 3u);
  EXPECT_TRUE(ledger.committed()[0].identical());
  EXPECT_EQ(ledger.committed()[0].params_digest(), d);
  EXPECT_FALSE(ledger.committed()[1].identical());
  EXPECT_FALSE(ledger.committed()[2].identical());
  EXPECT_TRUE(ledger.committed()[2].digest_checked());
}

TEST_F(RoundLedgerTest, RefusesReportsThatDoNotMatchWhatWasServed) {
  RoundLedger ledger(LedgerOptions(), nullptr, nullptr);
  ledger.Serve(Plan(0, 0, 4), 1);
  absl::Status s = ledger.AddRoundReport("w0", Report(Plan(0, 0, 5), 1, 1, 1, 1), false);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("report says steps [0, +5) but the plan was [0, +4)"),
            std::string::npos)
      << s;
  s = ledger.AddRoundReport("w0", Report(Plan(9, 0, 4), 1, 1, 1, 1), false);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  // A member of an ended generation flushing a round committed at the regroup: ignored.
  EXPECT_TRUE(ledger.AddRoundReport("w0", Report(Plan(9, 0, 4), 1, 1, 1, 1), true).ok());
  ledger.CommitReady(1);
  EXPECT_TRUE(ledger.committed().empty());
}

TEST_F(RoundLedgerTest, ResumeAtCommitsTheRoundsBeforeAndServesTheRestAgain) {
  RoundLedger ledger(LedgerOptions(), nullptr, nullptr);
  ledger.Serve(Plan(0, 0, 2), 2);
  ledger.Serve(Plan(1, 2, 3), 2);
  ledger.Serve(Plan(2, 5, 4), 2);
  ASSERT_TRUE(ledger.AddRoundReport("w0", Report(Plan(0, 0, 2), 1, 1, 1, 1), false).ok());
  EXPECT_EQ(ledger.PendingFrom(1).size(), 2u);  // a retried barrier call gets rounds 1 and 2

  EXPECT_TRUE(absl::IsInternal(ledger.ResumeAt(4, 2)));  // never served
  ASSERT_TRUE(ledger.ResumeAt(1, 2).ok());
  ASSERT_EQ(ledger.committed().size(), 1u);
  EXPECT_EQ(ledger.committed()[0].workers(), 1);  // with the report that came
  EXPECT_EQ(ledger.next_round(), 1);
  EXPECT_EQ(ledger.next_step(), 2);
  EXPECT_TRUE(ledger.nothing_pending());
  EXPECT_TRUE(ledger.PendingFrom(1).empty());
}

TEST_F(RoundLedgerTest, ServeBatchTakesThePlannersRoundsUntilTheStepsAddUp) {
  Recipe recipe = testing::SmallQsrRecipe(2);  // 3 epochs of 20 steps
  recipe.save_freq = 1;
  const RoundPlanner planner(recipe);
  const std::vector<Round> plan = planner.Plan();
  RoundLedger ledger(LedgerOptions(), nullptr, nullptr);
  size_t served = 0;
  int evals = 0, checkpoints = 0;
  for (;;) {
    const std::vector<v1::RoundPlan> batch = ledger.ServeBatch(planner, 7, 2);
    if (batch.empty()) break;
    int64_t steps = 0;
    for (const v1::RoundPlan& p : batch) {
      ASSERT_LT(served, plan.size());
      const Round& want = plan[served++];
      EXPECT_EQ(p.round(), want.index);
      EXPECT_EQ(p.start_step(), want.start_step);
      EXPECT_EQ(p.h(), want.h);
      EXPECT_EQ(p.eval_after(), want.eval_after) << p.round();
      EXPECT_EQ(p.checkpoint_after(), want.checkpoint_after) << p.round();
      evals += p.eval_after() ? 1 : 0;
      checkpoints += p.checkpoint_after() ? 1 : 0;
      steps += p.h();
    }
    // At least 7 steps, unless the plan ended; the last round is what reached 7.
    EXPECT_TRUE(steps >= 7 || ledger.next_step() == planner.total_steps()) << steps;
    EXPECT_LT(steps - batch.back().h(), 7);
  }
  EXPECT_EQ(served, plan.size());
  // The run's last round evaluates and checkpoints; so do some before it (epoch ends).
  EXPECT_TRUE(plan.back().eval_after && plan.back().checkpoint_after);
  EXPECT_GT(evals, 1);
  EXPECT_GT(checkpoints, 1);
  EXPECT_EQ(ledger.pending_count(), plan.size());
}

TEST_F(RoundLedgerTest, EvaluationsAndCheckpointsAreRecordedOncePerStep) {
  RoundLedger ledger(LedgerOptions(), nullptr, nullptr);
  v1::EvalReport e;
  e.set_step(10);
  e.set_test_acc(0.5);
  EXPECT_EQ(ledger.last_eval(), nullptr);
  EXPECT_TRUE(ledger.AddEval(e, absl::Now()));
  EXPECT_FALSE(ledger.AddEval(e, absl::Now()));
  e.set_step(5);
  EXPECT_FALSE(ledger.AddEval(e, absl::Now()));
  ASSERT_NE(ledger.last_eval(), nullptr);
  EXPECT_EQ(ledger.last_eval()->step(), 10);
  EXPECT_EQ(ledger.evals().size(), 1u);

  v1::CheckpointReport c;
  c.set_step(10);
  c.set_manifest("ckpt/step=10/manifest.yaml");
  EXPECT_TRUE(ledger.AddCheckpoint(c));
  c.set_manifest("other");
  EXPECT_FALSE(ledger.AddCheckpoint(c));
  EXPECT_EQ(ledger.last_checkpoint(), "ckpt/step=10/manifest.yaml");
}

TEST_F(RoundLedgerTest, ListRoundsCountsFromTheRunsFirstRound) {
  RoundLedger::Options o = LedgerOptions();
  o.start_round = 10;  // a run resumed from a checkpoint at round 10
  o.start_step = 40;
  RoundLedger ledger(o, nullptr, nullptr);
  for (int64_t i = 0; i < 4; ++i) {
    v1::RoundPlan plan = Plan(10 + i, 40 + 4 * i, 4);
    ledger.Serve(plan, 1);
    ASSERT_TRUE(ledger.AddRoundReport("w0", Report(plan, 1, 1, 1, 1), false).ok());
  }
  ledger.CommitReady(1);
  v1::ListRoundsReply all = ledger.ListRounds(0, 0);
  ASSERT_EQ(all.rounds_size(), 4);
  EXPECT_EQ(all.rounds(0).round(), 10);
  v1::ListRoundsReply some = ledger.ListRounds(11, 2);
  ASSERT_EQ(some.rounds_size(), 2);
  EXPECT_EQ(some.rounds(0).round(), 11);
  EXPECT_EQ(ledger.ListRounds(20, 0).rounds_size(), 0);
}

TEST_F(RoundLedgerTest, WritesTheJournalAndRunLogThatARestartRecoversFrom) {
  {
    Journal::Recovered none;
    absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(dir_ + "/state", &none);
    ASSERT_TRUE(journal.ok()) << journal.status();
    absl::StatusOr<std::unique_ptr<RunLog>> log = RunLog::Open(dir_ + "/run", "workers: 1\n");
    ASSERT_TRUE(log.ok()) << log.status();
    RoundLedger ledger(LedgerOptions(), std::move(*log), std::move(*journal));
    v1::JournalEntry started;
    started.mutable_started()->set_run_id("r");
    ledger.Record(started);
    v1::JournalEntry generation;
    generation.mutable_generation()->set_generation(1);
    generation.mutable_generation()->add_members("w0");
    ledger.Record(generation);
    ledger.Serve(Plan(0, 0, 4), 1);
    ledger.Serve(Plan(1, 4, 4), 1);
    ASSERT_TRUE(ledger.AddRoundReport("w0", Report(Plan(0, 0, 4), 0.25, 1, 8, 64), false).ok());
    ledger.CommitReady(1);
    v1::EvalReport e;
    e.set_step(4);
    e.set_test_acc(0.75);
    ledger.AddEval(e, absl::Now());
    v1::CheckpointReport c;
    c.set_step(4);
    c.set_manifest("m4");
    ledger.AddCheckpoint(c);
    ledger.WriteSummary("{\"state\":\"FINISHED\"}");
  }
  const std::vector<std::string> rounds =
      absl::StrSplit(Read(dir_ + "/run/rounds.jsonl"), '\n', absl::SkipEmpty());
  ASSERT_EQ(rounds.size(), 1u);
  // qsr.v1.RunLogRound: every field, counts as JSON numbers (protobuf quotes 64-bit integers).
  EXPECT_EQ(rounds[0],
            "{\"round\":0,\"step\":0,\"lr\":0.1,\"h\":4,\"workers\":1,\"generation\":1,"
            "\"bytes\":64,\"seconds\":1,\"train_loss\":0.25,\"samples\":8,\"identical\":true,"
            "\"digest_checked\":false}");
  absl::StatusOr<v1::RunLogRound> line = ParseJsonLine<v1::RunLogRound>(rounds[0]);
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->generation(), 1);
  absl::StatusOr<std::vector<v1::RunLogEval>> evals =
      ReadJsonLines<v1::RunLogEval>(dir_ + "/run/evals.jsonl");
  ASSERT_TRUE(evals.ok()) << evals.status();
  ASSERT_EQ(evals->size(), 1u);
  EXPECT_EQ((*evals)[0].step(), 4);
  EXPECT_DOUBLE_EQ((*evals)[0].test_acc(), 0.75);
  EXPECT_EQ(Read(dir_ + "/run/summary.json"), "{\"state\":\"FINISHED\"}\n");

  Journal::Recovered r;
  absl::StatusOr<std::unique_ptr<Journal>> reopened = Journal::Open(dir_ + "/state", &r);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_TRUE(r.exists);
  RoundLedger again(LedgerOptions(), nullptr, nullptr);
  again.Recover(r);
  ASSERT_EQ(again.committed().size(), 1u);
  EXPECT_DOUBLE_EQ(again.train_loss(), 0.25);
  EXPECT_EQ(again.bytes_per_worker(), 64);
  EXPECT_EQ(again.next_round(), 2);
  EXPECT_EQ(again.next_step(), 8);
  EXPECT_EQ(again.pending_count(), 1u);  // round 1 was served, not committed
  EXPECT_EQ(again.PendingFrom(1).at(0).start_step(), 4);
  ASSERT_NE(again.last_eval(), nullptr);
  EXPECT_DOUBLE_EQ(again.last_eval()->test_acc(), 0.75);
  EXPECT_EQ(again.last_checkpoint(), "m4");
  // Recovered reports keep their dedup: the same evaluation is not recorded twice.
  v1::EvalReport same;
  same.set_step(4);
  EXPECT_FALSE(again.AddEval(same, absl::Now()));
}

}  // namespace
}  // namespace qsr
