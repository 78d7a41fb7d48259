#include "cli/run_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "cli/qsr_run_flags.h"

namespace qsr {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;

FlagParser Parsed(std::vector<const char*> args) {
  args.insert(args.begin(), "qsr-run");
  FlagParser flags = QsrRunFlags();
  absl::Status s = flags.Parse(static_cast<int>(args.size()), args.data());
  EXPECT_TRUE(s.ok()) << s;
  return flags;
}

TEST(RunCommandsTest, TheCoordinatorGetsItsSecurityAndTheOverridesWithTheRunsWorkers) {
  FlagParser flags = Parsed({"--recipe", "r.yaml", "--tls-cert", "c.pem", "--tls-key", "k.pem",
                             "--token-protect-reads", "--workers", "3", "--max-lr", "0.2"});
  const std::vector<std::string> argv =
      CoordinatorArgv(flags, {"/bin", "0.0.0.0:7070", "runs/x", "x", "runs/x/port", 8});
  EXPECT_THAT(argv, ElementsAre("/bin/qsr-coordinator", "--recipe", "r.yaml", "--listen",
                                "0.0.0.0:7070", "--run-dir", "runs/x", "--run-id", "x",
                                "--port-file", "runs/x/port", "--tls-cert", "c.pem", "--tls-key",
                                "k.pem", "--token-protect-reads", "--max_lr=0.2", "--workers=8"));
  // Without a total (the single-machine run) the overrides pass as given.
  const std::vector<std::string> local =
      CoordinatorArgv(flags, {"/bin", "127.0.0.1:0", "runs/x", "x", "runs/x/port", 0});
  EXPECT_THAT(local, IsSupersetOf({"--workers=3", "--max_lr=0.2"}));
  EXPECT_THAT(local, Not(Contains("--workers=8")));
}

TEST(RunCommandsTest, ClientsGetTheClientSideFlagsUnderTheirOwnNames) {
  FlagParser flags = Parsed({"--tls-ca", "ca.pem", "--tls-client-cert", "w.pem", "--tls-client-key",
                             "w.key", "--token-file", "tok"});
  EXPECT_THAT(ClientSecurityArgs(flags, true),
              ElementsAre("--tls", "--tls-ca", "ca.pem", "--tls-cert", "w.pem", "--tls-key",
                          "w.key", "--token-file", "tok"));
  EXPECT_THAT(ClientSecurityArgs(Parsed({}), false), ElementsAre());
}

TEST(RunCommandsTest, ALocalWorkerIsNamedForTheRunAndUsesTlsWhenTheCoordinatorDoes) {
  FlagParser flags = Parsed({"--recipe", "r.yaml", "--data-dir", "/data", "--tls-cert", "c.pem",
                             "--tls-key", "k.pem", "--tls-ca", "ca.pem"});
  EXPECT_THAT(LocalWorkerArgv(flags, "/bin", "127.0.0.1:555", "run1", 4, "cuda:1", 1),
              ElementsAre("/bin/qsr-worker", "--coordinator", "127.0.0.1:555", "--threads", "4",
                          "--worker-id", "run1-w1", "--device", "cuda:1", "--heap", "keep",
                          "--data-dir", "/data", "--tls", "--tls-ca", "ca.pem"));
}

TEST(RunCommandsTest, LocalWorkersGetTheSnapshotFlagsWhenSnapshotsAreAskedFor) {
  FlagParser flags =
      Parsed({"--recipe", "r.yaml", "--snapshot-dir", "/tmp/s", "--snapshot-every", "0.125"});
  EXPECT_THAT(LocalWorkerArgv(flags, "/bin", "127.0.0.1:555", "run1", 1, "cpu", 0),
              ElementsAre("/bin/qsr-worker", "--coordinator", "127.0.0.1:555", "--threads", "1",
                          "--worker-id", "run1-w0", "--device", "cpu", "--heap", "keep",
                          "--snapshot-dir", "/tmp/s", "--snapshot-every", "0.125"));
  EXPECT_THAT(LocalWorkerArgv(Parsed({"--recipe", "r.yaml", "--snapshot-every", "0.125"}), "/bin",
                              "127.0.0.1:555", "run1", 1, "cpu", 0),
              Not(Contains("--snapshot-every")));
}

TEST(RunCommandsTest, AHostfileNodeGetsOnlyTheNodeFlagsGivenHere) {
  FlagParser flags = Parsed({"--recipe", "r.yaml", "--hostfile", "hosts", "--device", "cuda",
                             "--max-restarts", "5", "--tls"});
  EXPECT_THAT(HostfileNodeArgv(flags, "/opt/qsr", "10.0.0.1:7070", "/runs/x", 2, 4),
              ElementsAre("/opt/qsr/qsr-run", "--coordinator", "10.0.0.1:7070", "--nproc-per-node",
                          "4", "--node-name", "node2", "--log-dir", "/runs/x/logs/node2",
                          "--progress", "0s", "--device", "cuda", "--max-restarts", "5", "--tls"));
}

TEST(RunCommandsTest, RunIdAndFolderDefaultFromTheClock) {
  EXPECT_EQ(RunIdFrom(Parsed({"--run-id", "mine"})), "mine");
  EXPECT_THAT(RunIdFrom(Parsed({})), testing::MatchesRegex("[0-9]{8}-[0-9]{6}-[0-9]+"));
  EXPECT_EQ(RunDirFrom(Parsed({}), "abc"), "runs/abc");
  EXPECT_EQ(RunDirFrom(Parsed({"--run-dir", "/tmp/r"}), "abc"), "/tmp/r");
  EXPECT_EQ(BinDirFrom(Parsed({"--bin-dir", "/opt/qsr/bin"})), "/opt/qsr/bin");
  EXPECT_FALSE(BinDirFrom(Parsed({})).empty());
}

TEST(RunCommandsTest, TheRecipeCheckNamesWhatIsWrong) {
  absl::Status none = CheckRecipeFor(Parsed({}), 2);
  EXPECT_THAT(std::string(none.message()), HasSubstr("--recipe FILE is required"));
  absl::Status missing = CheckRecipeFor(Parsed({"--recipe", "/nonexistent/r.yaml"}), 2);
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.message()), HasSubstr("/nonexistent/r.yaml"));
}

}  // namespace
}  // namespace qsr
