// The coordinator's operator features in-process: Stop, evaluations, failure counts, the
// Prometheus endpoint, the log prefix, and the plot's data and script.
#include <httplib.h>

#include <atomic>
#include <cstring>
#include <map>
#include <regex>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/plot.h"
#include "logging/log_prefix.h"
#include "metrics/prometheus_text.h"
#include "common/recipe.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/run_controller.h"
#include "coordinator/run_metrics.h"
#include "gtest/gtest.h"
#include "metrics/metrics_server.h"
#include "tests/integration/fake_workers.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

const std::string kRecipe =
    std::string(QSR_SOURCE_DIR) + "/recipes/fashion-mnist/cnn-localsgd-qsr.yaml";

Recipe SmallRecipe(int workers, int epochs) {
  absl::StatusOr<Recipe> recipe = LoadRecipeFile(kRecipe);
  EXPECT_TRUE(recipe.ok()) << recipe.status();
  recipe->workers = workers;
  recipe->epochs = epochs;
  recipe->steps_per_epoch = 20;
  absl::Status s = ResolveRecipe(*recipe);
  EXPECT_TRUE(s.ok()) << s;
  return *recipe;
}

v1::JoinRequest JoinAs(int i) {
  v1::JoinRequest j;
  j.set_worker_id(absl::StrCat("w", i));
  j.set_host("127.0.0.1");
  j.set_device("cpu");
  return j;
}

v1::NextRoundsRequest Ask(int rank, int64_t next_round) {
  v1::NextRoundsRequest r;
  r.set_worker_id(absl::StrCat("w", rank));
  r.set_rank(rank);
  r.set_generation(1);
  r.set_next_round(next_round);
  return r;
}

v1::LeaveRequest LeaveAs(int rank, const std::string& error = "") {
  v1::LeaveRequest r;
  r.set_worker_id(absl::StrCat("w", rank));
  r.set_rank(rank);
  r.set_generation(1);
  r.set_error(error);
  return r;
}

// NextRounds for a controller whose barrier completes at once or in a later call.
struct Answer {
  bool called = false;
  v1::NextRoundsReply reply;
};

TEST(StopTest, BeforeAnyWorkerEndsTheRunAtOnce) {
  RunController c(SmallRecipe(2, 1), {}, nullptr);
  v1::StopReply reply = c.Stop(v1::StopRequest());
  EXPECT_EQ(reply.outcome().code(), v1::Outcome::OK);
  v1::GetStatusReply s = c.Status(absl::Now());
  EXPECT_EQ(s.state(), "FINISHED");
  EXPECT_EQ(s.message(), "stopped by operator");
  EXPECT_TRUE(s.stop_requested());
  EXPECT_TRUE(c.Done());
  absl::StatusOr<v1::JoinReply> late = c.JoinNow(JoinAs(0), absl::Now());
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->outcome().code(), v1::Outcome::RUN_FINISHED);
  // A second stop says the run is over.
  reply = c.Stop(v1::StopRequest());
  EXPECT_EQ(reply.outcome().code(), v1::Outcome::RUN_FINISHED);
  EXPECT_NE(reply.outcome().message().find("already FINISHED"), std::string::npos);
}

TEST(StopTest, WorkersFinishTheirRoundsThenLeaveCleanly) {
  RunController c(SmallRecipe(2, 5), {}, nullptr);
  ASSERT_TRUE(c.JoinNow(JoinAs(0), absl::Now()).ok());
  ASSERT_TRUE(c.JoinNow(JoinAs(1), absl::Now()).ok());
  Answer a0, a1;
  auto ask = [&](int rank, int64_t next, Answer* a) {
    *a = Answer();
    ASSERT_TRUE(c.NextRounds(Ask(rank, next), absl::Now(), [a](const v1::NextRoundsReply& r) {
                   a->called = true;
                   a->reply = r;
                 }).ok());
  };
  ask(0, 0, &a0);
  ask(1, 0, &a1);
  ASSERT_TRUE(a0.called && a1.called);
  ASSERT_EQ(a0.reply.outcome().code(), v1::Outcome::OK);
  ASSERT_GT(a0.reply.rounds_size(), 0);
  const v1::NextRoundsReply served = a0.reply;
  const v1::RoundPlan last = served.rounds(served.rounds_size() - 1);
  const int64_t end = last.start_step() + last.h();

  // Stop while the rounds are in flight: the run ends where they end.
  v1::StopRequest stop;
  stop.set_reason("test");
  v1::StopReply reply = c.Stop(stop);
  EXPECT_EQ(reply.outcome().code(), v1::Outcome::OK);
  EXPECT_EQ(reply.stop_step(), end);
  EXPECT_EQ(c.Status(absl::Now()).state(), "RUNNING");

  for (int rank : {0, 1}) {
    v1::ReportRequest report;
    report.set_worker_id(absl::StrCat("w", rank));
    report.set_rank(rank);
    report.set_generation(1);
    for (const v1::RoundPlan& p : served.rounds()) {
      v1::RoundReport* r = report.add_rounds();
      r->set_round(p.round());
      r->set_start_step(p.start_step());
      r->set_h(p.h());
      r->set_train_loss(1.0);
      r->set_samples(64 * p.h());
      r->set_seconds(0.01);
    }
    ASSERT_TRUE(c.Report(report, absl::Now()).ok());
  }
  // Rank 0 reaches the barrier first and is let go at once; so is rank 1.
  const int64_t next = last.round() + 1;
  ask(0, next, &a0);
  ASSERT_TRUE(a0.called);
  EXPECT_EQ(a0.reply.outcome().code(), v1::Outcome::RUN_FINISHED);
  EXPECT_EQ(a0.reply.outcome().message(), "stopped by operator");
  ask(1, next, &a1);
  ASSERT_TRUE(a1.called);
  EXPECT_EQ(a1.reply.outcome().code(), v1::Outcome::RUN_FINISHED);
  ASSERT_TRUE(c.Leave(LeaveAs(0), absl::Now()).ok());
  ASSERT_TRUE(c.Leave(LeaveAs(1), absl::Now()).ok());

  EXPECT_TRUE(c.Done());
  EXPECT_FALSE(c.Failed());
  v1::GetStatusReply s = c.Status(absl::Now());
  EXPECT_EQ(s.state(), "FINISHED");
  EXPECT_EQ(s.message(), "stopped by operator");
  EXPECT_EQ(s.step(), end);
  EXPECT_EQ(s.round(), last.round() + 1);
  EXPECT_EQ(s.failures(), 0);
}

TEST(StopTest, ReleasesAWorkerWaitingAtTheBarrier) {
  RunController c(SmallRecipe(2, 5), {}, nullptr);
  ASSERT_TRUE(c.JoinNow(JoinAs(0), absl::Now()).ok());
  ASSERT_TRUE(c.JoinNow(JoinAs(1), absl::Now()).ok());
  Answer a0;
  ASSERT_TRUE(c.NextRounds(Ask(0, 0), absl::Now(), [&a0](const v1::NextRoundsReply& r) {
                 a0.called = true;
                 a0.reply = r;
               }).ok());
  EXPECT_FALSE(a0.called) << "rank 0 waits for rank 1";
  c.Stop(v1::StopRequest());
  ASSERT_TRUE(a0.called);
  EXPECT_EQ(a0.reply.outcome().code(), v1::Outcome::RUN_FINISHED);
  ASSERT_TRUE(c.Leave(LeaveAs(0), absl::Now()).ok());
  ASSERT_TRUE(c.Leave(LeaveAs(1), absl::Now()).ok());
  EXPECT_EQ(c.Status(absl::Now()).state(), "FINISHED");
  EXPECT_EQ(c.Status(absl::Now()).step(), 0);
}

TEST(StopTest, FailuresAreCounted) {
  RunController c(SmallRecipe(2, 1), {}, nullptr);
  ASSERT_TRUE(c.JoinNow(JoinAs(0), absl::Now()).ok());
  ASSERT_TRUE(c.JoinNow(JoinAs(1), absl::Now()).ok());
  ASSERT_TRUE(c.Leave(LeaveAs(1, "out of memory"), absl::Now()).ok());
  // The survivor could go on alone (min_workers 1): the group re-forms.
  v1::GetStatusReply s = c.Status(absl::Now());
  EXPECT_EQ(s.state(), "REGROUPING");
  EXPECT_EQ(s.failures(), 1);
  // Without it, nobody holds the model: the run fails.
  ASSERT_TRUE(c.Leave(LeaveAs(0, "disk full"), absl::Now()).ok());
  s = c.Status(absl::Now());
  EXPECT_EQ(s.state(), "FAILED");
  EXPECT_EQ(s.failures(), 2);
  EXPECT_EQ(c.Stop(v1::StopRequest()).outcome().code(), v1::Outcome::RUN_FAILED);
}

// name{labels} -> value, from a Prometheus text page.
std::map<std::string, double> ParseMetrics(const std::string& page) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    size_t space = line.rfind(' ');
    out[std::string(line.substr(0, space))] = std::stod(std::string(line.substr(space + 1)));
  }
  return out;
}

TEST(MetricsTest, ServesAFinishedRun) {
  testing::TempDir dir;
  CoordinatorServer::Options options;
  options.run_dir = dir.path() + "/run";
  options.metrics_port = 0;
  options.run.run_id = "metrics-\"test\"";
  const Recipe recipe = SmallRecipe(2, 2);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, options);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->metrics_port(), 0);
  {
    testing::FakeWorkers::Options fake;
    fake.workers = 2;
    testing::FakeWorkers workers((*server)->address(), fake);
    absl::Status done = workers.Wait();
    ASSERT_TRUE(done.ok()) << done;
  }
  ASSERT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(30)));

  httplib::Client http("127.0.0.1", (*server)->metrics_port());
  http.set_connection_timeout(5);
  http.set_read_timeout(5);
  httplib::Result res = http.Get("/metrics");
  ASSERT_TRUE(res) << "GET /metrics failed: " << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  std::map<std::string, double> m = ParseMetrics(res->body);
  const int64_t rounds = (*server)->controller().Rounds({}).rounds_size();
  ASSERT_GT(rounds, 0);
  EXPECT_EQ(m["qsr_run_state{state=\"FINISHED\"}"], 1);
  EXPECT_EQ(m["qsr_run_state{state=\"RUNNING\"}"], 0);
  EXPECT_EQ(m["qsr_global_step"], 40);
  EXPECT_EQ(m["qsr_total_steps"], 40);
  EXPECT_EQ(m["qsr_epoch"], 2);
  EXPECT_EQ(m["qsr_rounds_total"], rounds);
  EXPECT_EQ(m["qsr_round_duration_seconds_count"], rounds);
  EXPECT_EQ(m["qsr_round_duration_seconds_bucket{le=\"+Inf\"}"], rounds);
  EXPECT_EQ(m["qsr_samples_total"], 2 * 64 * 40);
  EXPECT_EQ(m["qsr_averaging_sent_per_worker_bytes_total"], 4096 * rounds);
  EXPECT_EQ(m["qsr_workers{state=\"left\"}"], 2);
  EXPECT_EQ(m["qsr_worker_failures_total"], 0);
  EXPECT_EQ(m["qsr_regroups_total"], 0);
  EXPECT_EQ(m["qsr_param_checked_rounds_total"], rounds);
  EXPECT_EQ(m["qsr_param_mismatch_rounds_total"], 0);
  EXPECT_GT(m["qsr_learning_rate"], 0);
  EXPECT_GE(m["qsr_sync_period_steps"], 1);
  EXPECT_NEAR(m["qsr_test_accuracy_ratio"], 0.5 + 0.4 * 40 / 1000.0, 1e-9);
  // Points in time are Unix seconds: the run started and its last round committed within the
  // last few minutes, and the workers were last heard from then too.
  const double now_s = absl::ToUnixMicros(absl::Now()) / 1e6;
  EXPECT_NEAR(m["qsr_run_start_timestamp_seconds"], now_s, 300);
  EXPECT_LE(m["qsr_run_start_timestamp_seconds"], m["qsr_last_round_timestamp_seconds"]);
  EXPECT_NEAR(m["qsr_last_round_timestamp_seconds"], now_s, 300);
  int worker_timestamps = 0;
  for (const auto& [name, value] : m) {
    if (!absl::StartsWith(name, "qsr_worker_last_seen_timestamp_seconds{")) continue;
    ++worker_timestamps;
    EXPECT_NEAR(value, now_s, 300) << name;
  }
  EXPECT_EQ(worker_timestamps, 2) << res->body;
  // Rates are left to PromQL: no gauge of samples per second for the run.
  EXPECT_EQ(m.count("qsr_samples_per_second"), 0u);
  // The build and the process, as every Prometheus client library exports them.
  EXPECT_EQ(m.count(absl::StrCat("qsr_build_info{binary=\"qsr-coordinator\",version=\"",
                                 QsrVersion(), "\",revision=\"", QsrRevision(), "\"}")),
            1u)
      << res->body;
  EXPECT_GT(m["process_cpu_seconds_total"], 0);
  EXPECT_GT(m["process_resident_memory_bytes"], 1 << 20);
  EXPECT_GT(m["process_virtual_memory_bytes"], m["process_resident_memory_bytes"]);
  EXPECT_NEAR(m["process_start_time_seconds"], now_s, 600);
  EXPECT_GT(m["process_open_fds"], 2);
  EXPECT_GE(m["process_max_fds"], m["process_open_fds"]);
  EXPECT_EQ(
      m.count("qsr_info{run_id=\"metrics-\\\"test\\\"\",model=\"cnn\",optimizer=\"localsgd\"}"), 1u)
      << res->body;
  // Buckets are cumulative.
  double previous = 0;
  for (double le : RoundStats::kBuckets) {
    double v = m[absl::StrCat("qsr_round_duration_seconds_bucket{le=\"", le, "\"}")];
    EXPECT_GE(v, previous) << le;
    previous = v;
  }

  httplib::Result health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->body, "ok\n");
  EXPECT_EQ(http.Get("/nothing-here")->status, 404);

  // Both evaluations (one per epoch) are kept, for ListEvals and plots.
  v1::ListEvalsReply evals = (*server)->controller().Evals();
  ASSERT_EQ(evals.evals_size(), 2);
  EXPECT_GE(evals.evals(0).step(), 20);  // after the round that crosses the epoch boundary
  EXPECT_LT(evals.evals(0).step(), 40);
  EXPECT_EQ(evals.evals(1).step(), 40);
}

TEST(MetricsTest, PageIsWellFormed) {
  v1::GetStatusReply s;
  s.set_run_id("a\\b\nc");
  s.set_state("RUNNING");
  s.set_test_acc(-1);
  v1::WorkerInfo* w = s.add_worker_info();
  w->set_host("h\"1");
  const std::string page =
      MetricsPage(RenderRunMetrics(s, RoundStats::Snapshot(), absl::Now()), "qsr-coordinator");
  const std::regex sample(
      R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]+="([^"\\]|\\.)*",?)*\})? \S+$)");
  std::set<std::string> typed;
  for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
    std::string l(line);
    if (absl::StartsWith(l, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(l, ' ');
      ASSERT_EQ(parts.size(), 4u) << l;
      typed.insert(parts[2]);
      continue;
    }
    if (absl::StartsWith(l, "# HELP ")) continue;
    EXPECT_TRUE(std::regex_match(l, sample)) << l;
    std::string name = l.substr(0, l.find_first_of("{ "));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::EndsWith(name, suffix) && !typed.count(name)) {
        name = name.substr(0, name.size() - strlen(suffix));
      }
    }
    EXPECT_TRUE(typed.count(name)) << "no TYPE before " << l;
  }
  EXPECT_NE(page.find(R"(run_id="a\\b\nc")"), std::string::npos) << page;
  EXPECT_EQ(page.find("qsr_test_accuracy"), std::string::npos) << "no evaluation yet";
  EXPECT_EQ(page.find("qsr_last_round_timestamp_seconds"), std::string::npos) << "no round yet";
}

// The endpoint the agent uses too: whatever its owner renders, on every scrape, then the build and
// the process.
TEST(MetricsTest, ServesItsOwnersFamiliesWithBuildAndProcess) {
  std::atomic<int> scrapes{0};
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(
      [&scrapes] {
        return absl::StrCat("# HELP qsr_x_total X.\n# TYPE qsr_x_total counter\nqsr_x_total ",
                            ++scrapes, "\n");
      },
      "qsr-agent", "127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client http("127.0.0.1", (*server)->port());
  http.set_connection_timeout(5);
  http.set_read_timeout(5);
  for (int want = 1; want <= 2; ++want) {
    httplib::Result res = http.Get("/metrics");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    std::map<std::string, double> m = ParseMetrics(res->body);
    EXPECT_EQ(m["qsr_x_total"], want) << res->body;
    EXPECT_EQ(m.count(absl::StrCat("qsr_build_info{binary=\"qsr-agent\",version=\"", QsrVersion(),
                                   "\",revision=\"", QsrRevision(), "\"}")),
              1u)
        << res->body;
    EXPECT_GT(m["process_resident_memory_bytes"], 0);
    EXPECT_GT(m["process_open_fds"], 0);
  }
  (*server)->Shutdown();
}

TEST(MetricsTest, BusyPortIsAnErrorNamingIt) {
  const Recipe recipe = SmallRecipe(2, 1);
  CoordinatorServer::Options options;
  options.metrics_port = 0;
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> first =
      CoordinatorServer::Start(recipe, options);
  ASSERT_TRUE(first.ok()) << first.status();
  options.metrics_port = (*first)->metrics_port();
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> second =
      CoordinatorServer::Start(recipe, options);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(absl::StrCat(options.metrics_port)), std::string::npos)
      << second.status();
}

TEST(LogPrefixTest, CarriesRunAndRank) {
  SetLogContext("", "");
  EXPECT_EQ(LogContext(), "run=- rank=-");
  SetLogContext("20261125-1200-7", "3");
  EXPECT_EQ(LogContext(), "run=20261125-1200-7 rank=3");
}

TEST(PlotTest, ReadsARunDirectory) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() + "/rounds.jsonl",
                     "{\"round\":0,\"step\":0,\"lr\":0.1,\"h\":4,\"workers\":2,\"bytes\":1,"
                     "\"seconds\":0.5,\"train_loss\":2.25,\"samples\":512,\"identical\":true}\n"
                     "{\"round\":1,\"step\":4,\"lr\":0.05,\"h\":8,\"workers\":2,\"bytes\":1,"
                     "\"seconds\":0.5,\"train_loss\":1.5,\"samples\":1024,\"identical\":true}\n");
  testing::WriteFile(dir.path() + "/evals.jsonl",
                     "{\"step\":12,\"epoch\":1,\"test_loss\":0.4,\"test_acc\":0.87,"
                     "\"examples\":10000,\"elapsed_s\":3.5}\n");
  testing::WriteFile(dir.path() + "/summary.json",
                     "{\"run_id\":\"r7\",\"state\":\"FINISHED\",\"model\":\"mlp\","
                     "\"optimizer\":\"localadamw\"}\n");
  absl::StatusOr<PlotData> data = ReadRunDir(dir.path());
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->rounds.size(), 2u);
  EXPECT_EQ(data->rounds[1].step, 4);
  EXPECT_EQ(data->rounds[1].h, 8);
  EXPECT_DOUBLE_EQ(data->rounds[1].lr, 0.05);
  EXPECT_DOUBLE_EQ(data->rounds[0].train_loss, 2.25);
  ASSERT_EQ(data->evals.size(), 1u);
  EXPECT_DOUBLE_EQ(data->evals[0].test_acc, 0.87);
  EXPECT_EQ(data->title, "r7: mlp / localadamw (FINISHED)");

  absl::StatusOr<std::string> script = GnuplotScript(*data, "r.dat", "e.dat", "out.svg");
  ASSERT_TRUE(script.ok());
  EXPECT_NE(script->find("set terminal svg"), std::string::npos);
  EXPECT_NE(script->find("set xrange [0:12]"), std::string::npos) << *script;
  EXPECT_FALSE(GnuplotScript(*data, "r.dat", "e.dat", "out.jpg").ok());
  EXPECT_FALSE(GnuplotScript(PlotData(), "r.dat", "e.dat", "out.png").ok());

  testing::WriteFile(dir.path() + "/evals.jsonl", "{\"step\":12}\nnot json\n");
  absl::StatusOr<PlotData> bad = ReadRunDir(dir.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("evals.jsonl:1"), std::string::npos) << bad.status();
  EXPECT_FALSE(ReadRunDir(dir.path() + "/nowhere").ok());
}

}  // namespace
}  // namespace qsr
