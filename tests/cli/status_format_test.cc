#include "cli/status_format.h"

#include <gtest/gtest.h>

namespace qsr {
namespace {

v1::GetStatusReply Status(int64_t step, int64_t total, double elapsed_s) {
  v1::GetStatusReply s;
  s.set_step(step);
  s.set_total_steps(total);
  s.set_elapsed_s(elapsed_s);
  return s;
}

TEST(StatusFormatTest, EtaFromTheRateSinceTheFirstStatus) {
  // 100 steps in the last 10 s, 500 left: 50 s.
  EXPECT_DOUBLE_EQ(EstimateEtaSeconds(Status(300, 800, 60), 200, 10), 50);
}

TEST(StatusFormatTest, EtaFromTheRunsAverageBeforeAnyNewStep) {
  // No step since: 200 steps in 40 s over the run, 600 left: 120 s.
  EXPECT_DOUBLE_EQ(EstimateEtaSeconds(Status(200, 800, 40), 200, 5), 120);
}

TEST(StatusFormatTest, EtaUnknownBeforeTheFirstStep) {
  EXPECT_EQ(EstimateEtaSeconds(Status(0, 800, 3), 0, 5), -1);
  EXPECT_NE(WatchLine(Status(0, 800, 3), -1).find("ETA --"), std::string::npos);
}

}  // namespace
}  // namespace qsr
