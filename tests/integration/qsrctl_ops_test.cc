// qsrctl's operator commands (workers, watch, stop, plot) and the coordinator's --metrics-port,
// against qsr-coordinator processes on OS-chosen loopback ports, driven by FakeWorkers.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/process_group.h"
#include "client/ops_client.h"
#include "gtest/gtest.h"
#include "tests/integration/fake_workers.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

const std::string kBin = QSR_BIN_DIR;
const std::string kRecipe =
    std::string(QSR_SOURCE_DIR) + "/recipes/fashion-mnist/cnn-localsgd-qsr.yaml";

// A port that was free a moment ago (the OS chose it); for flags that take a fixed port.
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// A qsr-coordinator process for 2 workers and 20-step epochs, lingering after the run so that
// its final status stays readable.
class CoordinatorProcess {
 public:
  CoordinatorProcess(const std::string& dir, int epochs, std::vector<std::string> extra = {}) {
    const std::string port_file = dir + "/port";
    std::vector<std::string> argv = {kBin + "/qsr-coordinator",
                                     "--recipe",
                                     kRecipe,
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     port_file,
                                     "--run-dir",
                                     dir + "/run",
                                     "--run-id",
                                     "ops-test",
                                     "--workers",
                                     "2",
                                     "--steps-per-epoch",
                                     "20",
                                     "--epochs",
                                     absl::StrCat(epochs),
                                     "--linger",
                                     "60s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    EXPECT_TRUE(group_.Spawn("coord", argv).ok());
    std::string port;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (port.empty() && absl::Now() < deadline && !group_.ExitCode(0)) {
      group_.Pump(absl::Milliseconds(50));
      port = testing::ReadFile(port_file);
    }
    EXPECT_FALSE(port.empty()) << "the coordinator did not write its port";
    port.erase(port.find_last_not_of("\n") + 1);
    address_ = "127.0.0.1:" + port;
  }
  ~CoordinatorProcess() { group_.TerminateAll(absl::Seconds(5)); }

  const std::string& address() const { return address_; }
  // Forwards the coordinator's output (call now and then so that its pipe never fills).
  void Pump() { group_.Pump(absl::ZeroDuration()); }

 private:
  ProcessGroup group_;
  std::string address_;
};

testing::CommandResult Qsrctl(const std::string& address, std::vector<std::string> args,
                              int timeout_s = 60) {
  std::vector<std::string> argv = {kBin + "/qsrctl", "--coordinator", address};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::RunCommand(argv, timeout_s);
}

// Waits (bounded) until the run is RUNNING with every worker in and some rounds done.
void AwaitRunning(const std::string& address, int64_t min_rounds) {
  OpsClient client(address);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(absl::Seconds(5));
    if (s.ok() && s->state() == "RUNNING" && s->round() >= min_rounds) return;
    absl::SleepFor(absl::Milliseconds(20));
  }
  FAIL() << "the run at " << address << " did not get going";
}

TEST(QsrctlOpsTest, WorkersThenStopEndTheRunCleanly) {
  testing::TempDir dir;
  CoordinatorProcess coordinator(dir.path(), /*epochs=*/1000);
  testing::FakeWorkers::Options options;
  options.pace = absl::Milliseconds(30);
  testing::FakeWorkers workers(coordinator.address(), options);
  AwaitRunning(coordinator.address(), 2);

  testing::CommandResult json = Qsrctl(coordinator.address(), {"workers", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.output;
  std::vector<std::string> lines = absl::StrSplit(json.output, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << json.output;
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(testing::JsonField(lines[rank], "rank"), absl::StrCat(rank));
    EXPECT_EQ(testing::JsonField(lines[rank], "device"), "fake");
    EXPECT_EQ(testing::JsonField(lines[rank], "state"), "ACTIVE");
    EXPECT_TRUE(absl::StartsWith(testing::JsonField(lines[rank], "host"), "127.0.0.1"));
    EXPECT_GT(std::stod(testing::JsonField(lines[rank], "samples_per_sec")), 0) << lines[rank];
    EXPECT_LT(std::stod(testing::JsonField(lines[rank], "last_seen_s")), 30) << lines[rank];
  }
  testing::CommandResult table = Qsrctl(coordinator.address(), {"workers"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  for (const char* text :
       {"RANK", "HOST", "DEVICE", "LAST HEARTBEAT", "SAMPLES/S", "fake-0", "fake-1", "ACTIVE"}) {
    EXPECT_NE(table.output.find(text), std::string::npos) << text << " in " << table.output;
  }

  testing::CommandResult stop =
      Qsrctl(coordinator.address(), {"stop", "--reason", "test", "--wait", "--timeout", "60s"});
  coordinator.Pump();
  EXPECT_EQ(stop.exit_code, 0) << stop.output;
  EXPECT_NE(stop.output.find("stop requested"), std::string::npos) << stop.output;
  EXPECT_NE(stop.output.find("FINISHED (stopped by operator)"), std::string::npos) << stop.output;
  absl::Status left = workers.Wait();
  EXPECT_TRUE(left.ok()) << "the workers did not leave cleanly: " << left;

  testing::CommandResult status = Qsrctl(coordinator.address(), {"status", "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(testing::JsonField(status.output, "state"), "FINISHED");
  EXPECT_EQ(testing::JsonField(status.output, "message"), "stopped by operator");
  EXPECT_EQ(testing::JsonField(status.output, "stop_requested"), "true");
  EXPECT_EQ(testing::JsonField(status.output, "failures"), "0");
  const int64_t step = std::stoll(testing::JsonField(status.output, "step"));
  EXPECT_GT(step, 0);
  EXPECT_LT(step, 1000 * 20) << "the run stopped early";
  EXPECT_NE(testing::ReadFile(dir.path() + "/run/summary.json").find("stopped by operator"),
            std::string::npos);

  // Watching a stopped run ends at once; stopping it again is a no-op.
  testing::CommandResult watch =
      Qsrctl(coordinator.address(), {"watch", "--interval", "200ms"}, 30);
  EXPECT_EQ(watch.exit_code, 0) << watch.output;
  EXPECT_NE(watch.output.find("FINISHED (stopped by operator)"), std::string::npos) << watch.output;
  testing::CommandResult again = Qsrctl(coordinator.address(), {"stop"});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("already FINISHED"), std::string::npos) << again.output;
}

TEST(QsrctlOpsTest, WatchFollowsARunToItsEndAndPlotAndMetricsShowIt) {
  testing::TempDir dir;
  const int metrics_port = FreePort();
  ASSERT_GT(metrics_port, 0);
  CoordinatorProcess coordinator(dir.path(), /*epochs=*/3,
                                 {"--metrics-port", absl::StrCat(metrics_port)});
  testing::FakeWorkers::Options options;
  options.pace = absl::Milliseconds(100);  // about 15 batches: the watch sees the run move
  testing::FakeWorkers workers(coordinator.address(), options);

  testing::CommandResult watch =
      Qsrctl(coordinator.address(), {"watch", "--interval", "200ms", "--timeout", "60s"});
  coordinator.Pump();
  ASSERT_EQ(watch.exit_code, 0) << watch.output;
  EXPECT_TRUE(workers.Wait().ok());
  std::vector<std::string> lines = absl::StrSplit(watch.output, '\n', absl::SkipEmpty());
  ASSERT_GE(lines.size(), 2u) << watch.output;
  EXPECT_NE(watch.output.find("ETA"), std::string::npos) << watch.output;
  EXPECT_NE(watch.output.find(" lr "), std::string::npos) << watch.output;
  EXPECT_NE(watch.output.find(" H "), std::string::npos) << watch.output;
  EXPECT_NE(lines[lines.size() - 2].find("100.0% step 60/60"), std::string::npos) << watch.output;
  EXPECT_NE(lines.back().find("run ops-test FINISHED"), std::string::npos) << watch.output;

  // The binary's --metrics-port serves the run.
  httplib::Client http("127.0.0.1", metrics_port);
  http.set_connection_timeout(5);
  http.set_read_timeout(5);
  httplib::Result metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_NE(metrics->body.find("qsr_run_state{state=\"FINISHED\"} 1"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("qsr_global_step 60\n"), std::string::npos) << metrics->body;

  // A plot of the live run (rounds and evaluations over gRPC) and one of its run directory.
  const std::string live = dir.path() + "/live.svg";
  testing::CommandResult plot = Qsrctl(coordinator.address(), {"plot", "--out", live});
  ASSERT_EQ(plot.exit_code, 0) << plot.output;
  EXPECT_NE(plot.output.find("3 evaluations"), std::string::npos) << plot.output;
  EXPECT_NE(testing::ReadFile(live).find("<svg"), std::string::npos);
  const std::string png = dir.path() + "/run.png";
  plot = Qsrctl(coordinator.address(), {"plot", "--run-dir", dir.path() + "/run", "--out", png});
  ASSERT_EQ(plot.exit_code, 0) << plot.output;
  EXPECT_EQ(testing::ReadFile(png).substr(0, 8), "\x89PNG\r\n\x1a\n");
}

// The value of the unlabelled sample `name` in a Prometheus text exposition (-1 when absent).
double Sample(const std::string& body, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (absl::StartsWith(line, name + " ")) {
      return std::stod(std::string(line.substr(name.size() + 1)));
    }
  }
  return -1;
}

// qsr-agent's --metrics-port serves the host's relay counters while workers train through it.
TEST(QsrctlOpsTest, QsrAgentServesItsMetricsPort) {
  testing::TempDir dir;
  CoordinatorProcess coordinator(dir.path(), /*epochs=*/2);
  const int metrics_port = FreePort();
  ASSERT_GT(metrics_port, 0);
  ProcessGroup agents;
  const std::string port_file = dir.path() + "/agent.port";
  ASSERT_TRUE(
      agents
          .Spawn("agent", {kBin + "/qsr-agent", "--coordinator", coordinator.address(), "--listen",
                           "127.0.0.1:0", "--port-file", port_file, "--metrics-port",
                           absl::StrCat(metrics_port), "--metrics-host", "127.0.0.1"})
          .ok());
  std::string port;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (port.empty() && absl::Now() < deadline && !agents.ExitCode(0)) {
    agents.Pump(absl::Milliseconds(50));
    coordinator.Pump();
    port = testing::ReadFile(port_file);
  }
  ASSERT_FALSE(port.empty()) << "the agent did not write its port";
  port.erase(port.find_last_not_of("\n") + 1);

  testing::FakeWorkers workers("127.0.0.1:" + port, {});
  ASSERT_TRUE(workers.Wait().ok());
  agents.Pump(absl::ZeroDuration());
  coordinator.Pump();

  httplib::Client http("127.0.0.1", metrics_port);
  http.set_connection_timeout(5);
  http.set_read_timeout(5);
  httplib::Result metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics) << httplib::to_string(metrics.error());
  EXPECT_EQ(metrics->status, 200);
  // Both workers' barrier calls reached the agent, and it sent the host's upstream.
  EXPECT_GE(Sample(metrics->body, "qsr_agent_barrier_calls_total"), 2) << metrics->body;
  EXPECT_GE(Sample(metrics->body, "qsr_agent_upstream_barrier_calls_total"), 1) << metrics->body;
  EXPECT_GE(Sample(metrics->body, "qsr_agent_forwarded_calls_total"), 2) << metrics->body;
  EXPECT_NE(metrics->body.find("qsr_build_info{binary=\"qsr-agent\""), std::string::npos)
      << metrics->body;
  agents.TerminateAll(absl::Seconds(5));
}

TEST(QsrctlOpsTest, PlotDrawsASyntheticRunDirectory) {
  testing::TempDir dir;
  const std::string run = dir.path() + "/run";
  std::filesystem::create_directories(run);
  std::string rounds, evals;
  int64_t step = 0;
  for (int r = 0; step < 300; ++r) {
    const double lr = 0.1 * (1 - step / 300.0) + 0.001;
    const int64_t h = std::max<int64_t>(2, static_cast<int64_t>(0.0004 / (lr * lr)));
    absl::StrAppend(&rounds, "{\"round\":", r, ",\"step\":", step, ",\"lr\":", lr, ",\"h\":", h,
                    ",\"workers\":2,\"bytes\":1000,\"seconds\":0.1,\"train_loss\":",
                    2.0 / (1 + step / 50.0), ",\"samples\":128,\"identical\":true}\n");
    step += h;
  }
  for (int e = 1; e <= 3; ++e) {
    absl::StrAppend(&evals, "{\"step\":", e * 100, ",\"epoch\":", e,
                    ",\"test_loss\":0.5,\"test_acc\":", 0.8 + 0.03 * e,
                    ",\"examples\":10000,\"elapsed_s\":1.5}\n");
  }
  testing::WriteFile(run + "/rounds.jsonl", rounds);
  testing::WriteFile(run + "/evals.jsonl", evals);
  const std::string png = dir.path() + "/out.png";
  testing::CommandResult r =
      testing::RunCommand({kBin + "/qsrctl", "plot", "--run-dir", run, "--out", png}, 60);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("3 evaluations"), std::string::npos) << r.output;
  const std::string bytes = testing::ReadFile(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(0, 8), "\x89PNG\r\n\x1a\n");

  r = testing::RunCommand({kBin + "/qsrctl", "plot", "--run-dir", run, "--out", png + ".gif"}, 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("*.png or *.svg"), std::string::npos) << r.output;
  r = testing::RunCommand(
      {kBin + "/qsrctl", "plot", "--run-dir", dir.path() + "/nothing", "--out", png}, 30);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("not a run directory"), std::string::npos) << r.output;
}

TEST(QsrctlOpsTest, WatchIsBoundedByItsTimeout) {
  testing::TempDir dir;
  CoordinatorProcess coordinator(dir.path(), /*epochs=*/1);  // no worker ever joins
  const absl::Time start = absl::Now();
  // The names in seconds from before durations carried their unit still work.
  testing::CommandResult watch =
      Qsrctl(coordinator.address(), {"watch", "--interval-s", "0.2", "--timeout-s", "1"}, 30);
  EXPECT_EQ(watch.exit_code, 3) << watch.output;
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  EXPECT_NE(watch.output.find("WAITING"), std::string::npos) << watch.output;
  EXPECT_NE(watch.output.find("ETA --"), std::string::npos) << watch.output;
}

TEST(QsrctlOpsTest, ErrorsNameTheCoordinatorAndWhatFailed) {
  // Port 1 on loopback: nothing listens there.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"workers"}, std::vector<std::string>{"stop"},
        std::vector<std::string>{"watch"}, std::vector<std::string>{"plot", "--out", "x.png"},
        std::vector<std::string>{"rounds"}}) {
    testing::CommandResult r = Qsrctl("127.0.0.1:1", args, 30);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.output;
    EXPECT_NE(r.output.find("coordinator at 127.0.0.1:1"), std::string::npos)
        << args[0] << ": " << r.output;
    EXPECT_NE(r.output.find("unreachable"), std::string::npos) << args[0] << ": " << r.output;
  }
  testing::CommandResult r = Qsrctl("127.0.0.1:1", {"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("allowed: status, workers, rounds, watch, stop, plot, plan"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace qsr
