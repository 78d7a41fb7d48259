#include "cli/restart_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace qsr {
namespace {

using Action = RestartPolicy::Action;
using Run = RestartPolicy::Run;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1000000);

RestartPolicy::Options Budget(int max_restarts) {
  RestartPolicy::Options o;
  o.max_restarts = max_restarts;
  o.first_delay = absl::Seconds(1);
  o.max_delay = absl::Seconds(5);
  return o;
}

TEST(RestartPolicyTest, AWorkerThatExitsZeroHasFinished) {
  RestartPolicy p(Budget(3));
  EXPECT_EQ(p.OnExit(0, 0, Run::kGoingOn, kT0).action, Action::kFinished);
  EXPECT_EQ(p.restarts(), 0);
}

TEST(RestartPolicyTest, AKilledWorkerIsRestartedWhileTheRunGoesOn) {
  RestartPolicy p(Budget(3));
  RestartPolicy::Decision d = p.OnExit(1, 128 + 9, Run::kGoingOn, kT0);
  EXPECT_EQ(d.action, Action::kRestart);
  EXPECT_EQ(d.restart, 1);
  EXPECT_EQ(d.restart_at, kT0 + absl::Seconds(1));
  EXPECT_THAT(d.reason, HasSubstr("restart 1 of 3"));
  EXPECT_EQ(p.restarts(), 1);
}

TEST(RestartPolicyTest, RestartsOfOneWorkerBackOffUpToTheCap) {
  RestartPolicy p(Budget(10));
  std::vector<absl::Duration> delays;
  for (int i = 0; i < 5; ++i) delays.push_back(p.OnExit(0, 1, Run::kGoingOn, kT0).restart_at - kT0);
  EXPECT_EQ(delays,
            (std::vector<absl::Duration>{absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                         absl::Seconds(5), absl::Seconds(5)}));
  // Another worker's first restart is not delayed by the first one's history.
  EXPECT_EQ(p.OnExit(1, 1, Run::kGoingOn, kT0).restart_at, kT0 + absl::Seconds(1));
}

TEST(RestartPolicyTest, TheBudgetIsTheNodes) {
  RestartPolicy p(Budget(2));
  EXPECT_EQ(p.OnExit(0, 1, Run::kGoingOn, kT0).action, Action::kRestart);
  EXPECT_EQ(p.OnExit(1, 1, Run::kGoingOn, kT0).action, Action::kRestart);
  RestartPolicy::Decision d = p.OnExit(2, 1, Run::kGoingOn, kT0);
  EXPECT_EQ(d.action, Action::kGiveUp);
  EXPECT_THAT(d.reason, HasSubstr("2 restarts (--max-restarts) are spent"));
  EXPECT_EQ(RestartPolicy(Budget(0)).OnExit(0, 1, Run::kGoingOn, kT0).action, Action::kGiveUp);
}

TEST(RestartPolicyTest, NoRestartForUsageErrorsOrARunThatIsOver) {
  RestartPolicy p(Budget(3));
  EXPECT_THAT(p.OnExit(0, 2, Run::kGoingOn, kT0).reason, HasSubstr("usage error"));
  EXPECT_EQ(p.OnExit(0, 1, Run::kOver, kT0).action, Action::kGiveUp);
  RestartPolicy::Decision d = p.OnExit(0, 137, Run::kUnreachable, kT0);
  EXPECT_EQ(d.action, Action::kGiveUp);
  EXPECT_THAT(d.reason, HasSubstr("does not answer"));
  EXPECT_EQ(p.restarts(), 0);
}

TEST(RestartPolicyTest, DescribeExitNamesTheSignal) {
  EXPECT_EQ(DescribeExit(1), "exit code 1");
  EXPECT_EQ(DescribeExit(128 + 9), "killed by SIGKILL");
  EXPECT_EQ(DescribeExit(128 + 15), "killed by SIGTERM");
}

}  // namespace
}  // namespace qsr
