// qsr-run as a node of a multi-host run (--coordinator HOST:PORT --nproc-per-node N): bad input
// exits 2 with a message naming the value, before anything starts (no log folder, no process).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "cli/process_group.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;

const std::string kBin = QSR_BIN_DIR;

// A loopback port that is bound but never listens: connections to it are refused, and no
// other process can take it while the socket lives.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), len), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

struct NodeRun {
  testing::CommandResult result;
  bool started_anything = false;
};

NodeRun RunNode(const std::vector<std::string>& args, const std::string& env = "") {
  testing::TempDir dir;
  const std::string logs = dir.path() + "/logs";
  std::vector<std::string> argv;
  if (!env.empty()) argv = {"env", env};
  argv.push_back(kBin + "/qsr-run");
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--log-dir", logs});
  NodeRun r;
  r.result = testing::RunCommand(argv, 60);
  r.started_anything = std::filesystem::exists(logs);
  return r;
}

TEST(PlainHostsTest, NprocPerNodeZeroIsAUsageError) {
  RefusingPort port;
  // Out of range: the value and the range; not a number: the flag parser's typed check.
  for (const auto& [bad, expected] : std::vector<std::pair<std::string, std::string>>{
           {"0", "--nproc-per-node is 0; allowed: an integer from 1 to 1024"},
           {"-1", "--nproc-per-node is -1; allowed: an integer from 1 to 1024"},
           {"two", "flag --nproc-per-node: value \"two\" is not an integer"},
           {"5000", "--nproc-per-node is 5000; allowed: an integer from 1 to 1024"}}) {
    NodeRun r = RunNode({"--coordinator", port.address(), "--nproc-per-node", bad});
    EXPECT_EQ(r.result.exit_code, 2) << r.result.output;
    EXPECT_THAT(r.result.output, HasSubstr(expected));
    EXPECT_FALSE(r.started_anything);
  }
}

TEST(PlainHostsTest, MoreCudaDevicesThanVisibleIsAUsageError) {
  RefusingPort port;
  NodeRun r =
      RunNode({"--coordinator", port.address(), "--nproc-per-node", "3", "--device", "cuda"},
              "CUDA_VISIBLE_DEVICES=0,1");
  EXPECT_EQ(r.result.exit_code, 2) << r.result.output;
  EXPECT_THAT(r.result.output, HasSubstr("3 workers need 3 GPUs"));
  EXPECT_THAT(r.result.output, HasSubstr("2 GPUs are visible"));
  EXPECT_FALSE(r.started_anything);
}

TEST(PlainHostsTest, AnUnreachableCoordinatorIsAUsageErrorAfterABoundedWait) {
  RefusingPort port;
  NodeRun r = RunNode(
      {"--coordinator", port.address(), "--nproc-per-node", "1", "--coordinator-wait", "1.5s"});
  EXPECT_EQ(r.result.exit_code, 2) << r.result.output;
  EXPECT_THAT(r.result.output, HasSubstr("--coordinator " + port.address() + " did not answer"));
  EXPECT_THAT(r.result.output, HasSubstr("nothing was started"));
  EXPECT_FALSE(r.started_anything);
}

TEST(PlainHostsTest, ABadCoordinatorAddressIsNamed) {
  for (const char* bad : {"no-port", "no-such-host.invalid:7070"}) {
    NodeRun r = RunNode({"--coordinator", bad, "--nproc-per-node", "1"});
    EXPECT_EQ(r.result.exit_code, 2) << r.result.output;
    EXPECT_THAT(r.result.output, HasSubstr(bad));
    EXPECT_FALSE(r.started_anything);
  }
}

TEST(PlainHostsTest, NodeFlagsWithoutCoordinatorAreAUsageError) {
  testing::CommandResult r =
      testing::RunCommand({kBin + "/qsr-run", "--recipe", "x.yaml", "--nproc-per-node", "2"}, 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--nproc-per-node goes with --coordinator"));
}

// A run small enough for a loaded 2-core machine: mlp, 2 workers, 20 steps.
const std::vector<std::string> kTinyRun = {
    "--recipe",
    std::string(QSR_SOURCE_DIR) + "/recipes/fashion-mnist/mlp-localadamw-qsr.yaml",
    "--epochs=1",
    "--steps_per_epoch=20",
    "--total_batch_size=64",
    "--warmup_epochs=0",
    "--data-dir",
    "/usr/share/datasets/fashion-mnist",
    "--threads",
    "1"};

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), len);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(PlainHostsTest, AHostfileStartsEveryNodeThroughTheLauncher) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() + "/hosts",
                     "# two nodes on this machine\n127.0.0.1 slots=1\n\nlocalhost slots=1  # b\n");
  std::vector<std::string> argv = {kBin + "/qsr-run",
                                   "--hostfile",
                                   dir.path() + "/hosts",
                                   "--launcher",
                                   "env QSR_LAUNCHED_ON={host} bash -c",
                                   "--port",
                                   "0",
                                   "--listen-host",
                                   "127.0.0.1",
                                   "--run-dir",
                                   dir.path() + "/run",
                                   "--progress",
                                   "2s"};
  argv.insert(argv.end(), kTinyRun.begin(), kTinyRun.end());
  testing::CommandResult r = testing::RunCommand(argv, 300);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("2 workers on 2 hosts"));
  EXPECT_THAT(r.output, HasSubstr("done in"));
  EXPECT_THAT(testing::ReadFile(dir.path() + "/run/summary.json"),
              HasSubstr("\"state\":\"FINISHED\""));
  for (const char* node : {"node0", "node1"}) {
    const std::string logs = dir.path() + "/run/logs/" + std::string(node);
    EXPECT_THAT(testing::ReadFile(logs + ".out"),
                HasSubstr("node " + std::string(node) + ": done"));
    EXPECT_THAT(testing::ReadFile(logs + "/w0.log"), HasSubstr("done:"));
    EXPECT_FALSE(testing::ReadFile(logs + "/agent.log").empty());
  }
}

TEST(PlainHostsTest, ABadHostfileLineIsAUsageError) {
  testing::TempDir dir;
  testing::WriteFile(dir.path() + "/hosts", "a slots=1\nb slots=two\n");
  testing::CommandResult r = testing::RunCommand(
      {kBin + "/qsr-run", "--hostfile", dir.path() + "/hosts", "--run-dir", dir.path() + "/run",
       "--recipe", std::string(QSR_SOURCE_DIR) + "/recipes/fashion-mnist/mlp-localadamw-qsr.yaml"},
      30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("line 2: \"b slots=two\""));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/run"));
}

TEST(PlainHostsTest, TwoSlurmTasksRunTheCoordinatorAndTwoNodes) {
  testing::TempDir dir;
  const std::string port = std::to_string(FreePort());
  ProcessGroup tasks;
  for (int id : {1, 0}) {  // the second node first: it waits for the coordinator
    std::vector<std::string> argv = {"env",
                                     "SLURM_PROCID=" + std::to_string(id),
                                     "SLURM_LOCALID=0",
                                     "SLURM_NODEID=" + std::to_string(id),
                                     "SLURM_NTASKS=2",
                                     "SLURM_STEP_NODELIST=127.0.0.1,localhost",
                                     kBin + "/qsr-run",
                                     "--nproc-per-node",
                                     "1",
                                     "--port",
                                     port,
                                     "--listen-host",
                                     "127.0.0.1",
                                     "--run-dir",
                                     dir.path() + "/run",
                                     "--log-dir",
                                     dir.path() + "/logs"};
    argv.insert(argv.end(), kTinyRun.begin(), kTinyRun.end());
    ASSERT_TRUE(tasks.Spawn("task" + std::to_string(id), argv).ok());
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(300);
  while (!tasks.AllExited() && absl::Now() < deadline) tasks.Pump(absl::Milliseconds(100));
  ASSERT_TRUE(tasks.AllExited()) << "the tasks did not end in time";
  EXPECT_EQ(tasks.ExitCode(0), 0);
  EXPECT_EQ(tasks.ExitCode(1), 0);
  EXPECT_THAT(testing::ReadFile(dir.path() + "/run/summary.json"),
              HasSubstr("\"state\":\"FINISHED\""));
  for (const char* node : {"node0", "node1"}) {
    EXPECT_THAT(testing::ReadFile(dir.path() + "/logs/" + node + "/w0.log"), HasSubstr("done:"));
  }
}

// Processes whose command line holds `needle` (a worker id), from /proc.
int ProcessesWith(const std::string& needle) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string cmdline = testing::ReadFile(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find("qsr-worker") != std::string::npos &&
        cmdline.find(needle) != std::string::npos) {
      ++n;
    }
  }
  return n;
}

TEST(PlainHostsTest, SigtermReachesEveryChildAndTheNodeExits143) {
  testing::TempDir dir;
  const std::string port_file = dir.path() + "/port";
  ProcessGroup group;
  // A run of 4 workers: the node's one waits at the rendezvous until the signal.
  ASSERT_TRUE(group
                  .Spawn("coord", {kBin + "/qsr-coordinator", "--recipe",
                                   std::string(QSR_SOURCE_DIR) +
                                       "/recipes/fashion-mnist/mlp-localadamw-qsr.yaml",
                                   "--listen", "127.0.0.1:0", "--port-file", port_file, "--run-dir",
                                   dir.path() + "/run", "--workers", "4"})
                  .ok());
  std::string port;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (port.empty() && absl::Now() < deadline && !group.ExitCode(0)) {
    group.Pump(absl::Milliseconds(50));
    port = testing::ReadFile(port_file);
  }
  ASSERT_FALSE(port.empty()) << "the coordinator did not write its port";
  port.erase(port.find_last_not_of("\n") + 1);
  const std::string id = "sigterm-" + std::to_string(::getpid());
  const int node = *group.Spawn(
      "node", {kBin + "/qsr-run", "--coordinator", "127.0.0.1:" + port, "--nproc-per-node", "1",
               "--node-name", id, "--log-dir", dir.path() + "/logs", "--grace", "20s"});
  const absl::Time started = absl::Now() + absl::Seconds(60);
  while (ProcessesWith(id + "-w0") == 0 && absl::Now() < started) {
    group.Pump(absl::Milliseconds(50));
  }
  ASSERT_EQ(ProcessesWith(id + "-w0"), 1) << "the worker did not start";
  group.Signal(node, SIGTERM);
  const absl::Time ended = absl::Now() + absl::Seconds(40);
  while (!group.ExitCode(node) && absl::Now() < ended) group.Pump(absl::Milliseconds(50));
  ASSERT_TRUE(group.ExitCode(node).has_value()) << "qsr-run did not exit after SIGTERM";
  EXPECT_EQ(*group.ExitCode(node), 128 + SIGTERM);
  EXPECT_EQ(ProcessesWith(id + "-w0"), 0) << "the worker outlived its node's qsr-run";
  group.TerminateAll(absl::Seconds(5));
}

TEST(PlainHostsTest, SlurmWithSeveralTasksPerNodeIsAUsageError) {
  testing::CommandResult r = testing::RunCommand(
      {"env", "SLURM_PROCID=1", "SLURM_LOCALID=1", "SLURM_NODEID=0", "SLURM_NTASKS=2",
       "SLURM_STEP_NODELIST=n1", kBin + "/qsr-run", "--nproc-per-node", "1"},
      30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("SLURM_LOCALID is 1"));
  EXPECT_THAT(r.output, HasSubstr("--ntasks-per-node=1"));
}

}  // namespace
}  // namespace qsr
