#include "cli/node_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "cli/qsr_run_flags.h"

namespace qsr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// --host is given, so no route is looked up.
absl::StatusOr<NodeLauncher::Options> Node(std::vector<const char*> args,
                                           const std::string& node_name = "") {
  args.insert(args.begin(), {"qsr-run", "--host", "10.1.2.3"});
  FlagParser flags = QsrRunFlags();
  absl::Status s = flags.Parse(static_cast<int>(args.size()), args.data());
  EXPECT_TRUE(s.ok()) << s;
  return NodeOptionsFromFlags(flags, "10.0.0.1:7070", node_name);
}

std::string Error(std::vector<const char*> args) {
  absl::StatusOr<NodeLauncher::Options> o = Node(std::move(args));
  EXPECT_FALSE(o.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(o.status())) << o.status();
  return std::string(o.status().message());
}

TEST(NodeOptionsTest, FlagsBecomeTheLaunchersOptions) {
  absl::StatusOr<NodeLauncher::Options> o =
      Node({"--nproc-per-node", "2", "--threads", "3", "--max-restarts", "7", "--restart-delay",
            "2.5s", "--coordinator-wait", "9s", "--grace", "4s", "--log-dir", "/l", "--bin-dir",
            "/b", "--tls", "--tls-ca", "ca.pem"},
           "node5");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->coordinator, "10.0.0.1:7070");
  EXPECT_EQ(o->host, "10.1.2.3");
  EXPECT_EQ(o->node_name, "node5");
  EXPECT_THAT(o->devices, ElementsAre("cpu", "cpu"));
  EXPECT_EQ(o->threads, 3);
  EXPECT_EQ(o->restart.max_restarts, 7);
  EXPECT_EQ(o->restart.first_delay, absl::Milliseconds(2500));
  EXPECT_EQ(o->coordinator_wait, absl::Seconds(9));
  EXPECT_EQ(o->grace, absl::Seconds(4));
  EXPECT_EQ(o->progress_every, absl::Seconds(30));  // --progress not given
  EXPECT_EQ(o->log_dir, "/l");
  EXPECT_EQ(o->bin_dir, "/b");
  EXPECT_TRUE(o->security.tls);
  EXPECT_EQ(o->security.tls_ca, "ca.pem");
  EXPECT_THAT(o->agent_flags, ElementsAre("--tls", "--tls-ca", "ca.pem"));
}

TEST(NodeOptionsTest, TheOldNamesInSecondsStillWork) {
  absl::StatusOr<NodeLauncher::Options> o =
      Node({"--restart-delay-s", "2.5", "--coordinator-wait-s", "9", "--progress-s", "0"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->restart.first_delay, absl::Milliseconds(2500));
  EXPECT_EQ(o->coordinator_wait, absl::Seconds(9));
  EXPECT_EQ(o->progress_every, absl::ZeroDuration());
}

TEST(NodeOptionsTest, TheNodeIsNamedByFlagThenDefaultThenHost) {
  EXPECT_EQ(Node({"--node-name", "n"}, "node1")->node_name, "n");
  EXPECT_EQ(Node({})->node_name, "10.1.2.3");
  EXPECT_THAT(Node({})->log_dir, testing::StartsWith("qsr-logs/10.1.2.3-"));
}

TEST(NodeOptionsTest, EveryBadValueNamesItsFlagAndWhatIsAllowed) {
  EXPECT_THAT(Error({"--nproc-per-node", "0"}), HasSubstr("--nproc-per-node is 0;"));
  EXPECT_THAT(Error({"--nproc-per-node", "1025"}), HasSubstr("1 to 1024"));
  EXPECT_THAT(Error({"--threads", "-1"}), HasSubstr("--threads"));
  EXPECT_THAT(Error({"--max-restarts", "1001"}), HasSubstr("allowed: 0 to 1000"));
  EXPECT_THAT(Error({"--restart-delay", "-1s"}), HasSubstr("--restart-delay is -1s; allowed"));
  EXPECT_THAT(Error({"--restart-delay", "2h"}), HasSubstr("allowed: 0s to 1h"));
  EXPECT_THAT(Error({"--coordinator-wait", "0s"}), HasSubstr("--coordinator-wait is 0; allowed"));
  EXPECT_THAT(Error({"--grace", "-2s"}), HasSubstr("--grace is -2s"));
  EXPECT_THAT(Error({"--progress", "-1s"}), HasSubstr("--progress is -1s"));
  EXPECT_THAT(Error({"--heap", "huge"}), HasSubstr("--heap"));
  EXPECT_THAT(Error({"--device", "tpu"}), HasSubstr("tpu"));
  EXPECT_THAT(Error({"extra"}), HasSubstr("unexpected argument \"extra\""));
}

TEST(NodeOptionsTest, ABadCoordinatorAddressIsAnError) {
  FlagParser flags = QsrRunFlags();
  const char* args[] = {"qsr-run", "--host", "10.1.2.3"};
  ASSERT_TRUE(flags.Parse(3, args).ok());
  absl::StatusOr<NodeLauncher::Options> o = NodeOptionsFromFlags(flags, "no-port", "");
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("--coordinator"));
}

}  // namespace
}  // namespace qsr
