#include "agent/agent_flags.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace qsr {
namespace {

absl::StatusOr<AgentLaunch> Launch(std::vector<const char*> args) {
  args.insert(args.begin(), "qsr-agent");
  FlagParser flags = AgentFlags();
  absl::Status s = flags.Parse(static_cast<int>(args.size()), args.data());
  EXPECT_TRUE(s.ok()) << s;
  return AgentLaunchFromFlags(flags);
}

std::string Error(std::vector<const char*> args) {
  absl::StatusOr<AgentLaunch> launch = Launch(std::move(args));
  EXPECT_TRUE(absl::IsInvalidArgument(launch.status())) << launch.status();
  return std::string(launch.status().message());
}

TEST(AgentFlagsTest, FlagsBecomeTheLaunch) {
  absl::StatusOr<AgentLaunch> launch =
      Launch({"--coordinator", "10.0.0.1:7070", "--listen", "unix:/tmp/a.sock", "--window", "250ms",
              "--metrics-port", "0", "--port-file", "/tmp/p"});
  ASSERT_TRUE(launch.ok()) << launch.status();
  EXPECT_EQ(launch->agent.coordinator, "10.0.0.1:7070");
  EXPECT_EQ(launch->agent.listen, "unix:/tmp/a.sock");
  EXPECT_EQ(launch->agent.window, absl::Milliseconds(250));
  EXPECT_EQ(launch->metrics_port, 0);
  EXPECT_EQ(launch->metrics_host, "0.0.0.0");
  EXPECT_EQ(launch->port_file, "/tmp/p");
  EXPECT_FALSE(launch->agent.security.tls);
}

TEST(AgentFlagsTest, AWindowWithoutItsUnitFailsAtParse) {
  FlagParser flags = AgentFlags();
  const char* args[] = {"qsr-agent", "--coordinator", "h:1", "--window", "soon"};
  absl::Status s = flags.Parse(5, args);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("flag --window: value \"soon\" is not a duration"), std::string::npos)
      << s;
}

TEST(AgentFlagsTest, TheOldWindowInMillisecondsStillWorks) {
  absl::StatusOr<AgentLaunch> launch = Launch({"--coordinator", "h:1", "--window-ms", "250"});
  ASSERT_TRUE(launch.ok()) << launch.status();
  EXPECT_EQ(launch->agent.window, absl::Milliseconds(250));
}

TEST(AgentFlagsTest, DefaultsServeLoopbackWithoutMetrics) {
  absl::StatusOr<AgentLaunch> launch = Launch({"--coordinator", "h:1"});
  ASSERT_TRUE(launch.ok()) << launch.status();
  EXPECT_EQ(launch->agent.listen, "127.0.0.1:7071");
  EXPECT_EQ(launch->agent.window, absl::Milliseconds(500));
  EXPECT_EQ(launch->metrics_port, -1);
  EXPECT_EQ(launch->port_file, "");
}

TEST(AgentFlagsTest, EveryBadValueNamesItsFlag) {
  EXPECT_NE(Error({}).find("--coordinator HOST:PORT is required"), std::string::npos);
  EXPECT_NE(Error({"--coordinator", "h:1", "--window", "0s"}).find("allowed: 1ms to 10m"),
            std::string::npos);
  EXPECT_NE(Error({"--coordinator", "h:1", "--window", "11m"}).find("--window is 11m"),
            std::string::npos);
  EXPECT_NE(Error({"--coordinator", "h:1", "--metrics-port", "-2"}).find("--metrics-port is -2"),
            std::string::npos);
  EXPECT_NE(Error({"--coordinator", "h:1", "--metrics-port", "70000"}).find("65535"),
            std::string::npos);
}

TEST(AgentFlagsTest, TheStatsLineIsOneJsonObjectWithEveryCounter) {
  AgentService::Stats s;
  s.barrier_calls = 64;
  s.upstream_barrier_calls = 8;
  s.known_workers = 8;
  EXPECT_EQ(AgentStatsJson(s),
            "{\"agent\":\"stats\",\"barrier_calls\":64,\"upstream_barrier_calls\":8,"
            "\"forwarded_calls\":0,\"superseded\":0,\"local_heartbeats\":0,"
            "\"upstream_heartbeats\":0,\"local_reports\":0,\"upstream_report_batches\":0,"
            "\"known_workers\":8}");
}

}  // namespace
}  // namespace qsr
