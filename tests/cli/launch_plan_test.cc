#include "cli/launch_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace qsr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(LaunchPlanTest, HostfileInDeepSpeedsFormat) {
  auto hosts =
      ParseHostfile("# two nodes\n\nworker-1 slots=4\n  worker-2   slots=8  # gpus\n", "hosts");
  ASSERT_TRUE(hosts.ok()) << hosts.status();
  ASSERT_EQ(hosts->size(), 2u);
  EXPECT_EQ((*hosts)[0].host, "worker-1");
  EXPECT_EQ((*hosts)[0].slots, 4);
  EXPECT_EQ((*hosts)[1].host, "worker-2");
  EXPECT_EQ((*hosts)[1].slots, 8);
}

TEST(LaunchPlanTest, ABadHostfileLineIsNamedWithItsNumber) {
  auto error = [](const std::string& text) {
    auto r = ParseHostfile(text, "hosts.txt");
    EXPECT_FALSE(r.ok()) << text;
    return std::string(r.status().message());
  };
  EXPECT_THAT(error("a slots=1\nb slots=x\n"),
              HasSubstr("hostfile hosts.txt line 2: \"b slots=x\": bad slot count"));
  EXPECT_THAT(error("a slots=0"), HasSubstr("line 1: \"a slots=0\""));
  EXPECT_THAT(error("# c\na 4"), HasSubstr("line 2: \"a 4\": not a host and slots=N"));
  EXPECT_THAT(error("a slots=1\na slots=2"), HasSubstr("host a is named twice"));
  EXPECT_THAT(error("# nothing\n"), HasSubstr("names no host"));
}

TEST(LaunchPlanTest, SlurmHostlistsExpand) {
  auto h = ExpandHostlist("node[01-03,7],login1,gpu[9-10]x");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_THAT(*h, ElementsAre("node01", "node02", "node03", "node7", "login1", "gpu9x", "gpu10x"));
  EXPECT_FALSE(ExpandHostlist("node[3-1]").ok());
  EXPECT_FALSE(ExpandHostlist("node[1").ok());
  EXPECT_FALSE(ExpandHostlist("a,,b").ok());
}

TEST(LaunchPlanTest, SlurmTaskFromItsEnvironment) {
  std::map<std::string, std::string> env = {{"SLURM_PROCID", "1"},
                                            {"SLURM_LOCALID", "0"},
                                            {"SLURM_NODEID", "1"},
                                            {"SLURM_NTASKS", "2"},
                                            {"SLURM_STEP_NODELIST", "n[1-2]"}};
  auto get = [&](const char* k) -> const char* {
    auto it = env.find(k);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto t = SlurmTaskFromEnv(get);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(t->has_value());
  EXPECT_EQ((*t)->procid, 1);
  EXPECT_EQ((*t)->nodeid, 1);
  EXPECT_THAT((*t)->nodes, ElementsAre("n1", "n2"));

  env["SLURM_NTASKS"] = "4";
  EXPECT_THAT(SlurmTaskFromEnv(get).status().message(), HasSubstr("--ntasks-per-node=1"));
  env["SLURM_NTASKS"] = "2";
  env["SLURM_LOCALID"] = "x";
  EXPECT_THAT(SlurmTaskFromEnv(get).status().message(), HasSubstr("SLURM_LOCALID is \"x\""));
  env.erase("SLURM_PROCID");
  auto none = SlurmTaskFromEnv(get);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(LaunchPlanTest, RemoteCommandQuotesTheNodesCommand) {
  EXPECT_EQ(ShellQuote("plain/path-1"), "plain/path-1");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_THAT(RemoteCommand("ssh -p 2222", "h1", "/w d", {"/bin/qsr-run", "--a", "x y"}),
              ElementsAre("ssh", "-p", "2222", "h1", "cd '/w d' && exec /bin/qsr-run --a 'x y'"));
  EXPECT_THAT(RemoteCommand("env H={host} bash -c", "h2", "/w", {"run"}),
              ElementsAre("env", "H=h2", "bash", "-c", "cd /w && exec run"));
}

}  // namespace
}  // namespace qsr
