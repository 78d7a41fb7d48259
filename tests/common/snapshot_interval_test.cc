#include "common/snapshot_interval.h"

#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;

TEST(SnapshotIntervalTest, AcceptsFinitePositiveFractionsAndWholeEpochs) {
  for (double every : {0.03125, 0.0625, 1.0, 3.5, std::numeric_limits<double>::min()}) {
    EXPECT_TRUE(CheckSnapshotInterval(every).ok()) << every;
  }
}

TEST(SnapshotIntervalTest, RefusesZeroNegativeInfiniteAndNanNamingTheFlagAndTheValue) {
  const double inf = std::numeric_limits<double>::infinity();
  for (double every : {0.0, -0.0, -0.5, inf, -inf, std::nan("")}) {
    absl::Status s = CheckSnapshotInterval(every);
    ASSERT_FALSE(s.ok()) << every;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("--snapshot-every"));
    EXPECT_THAT(s.message(), HasSubstr("finite number above 0"));
  }
  EXPECT_THAT(CheckSnapshotInterval(-0.5).message(), HasSubstr("-0.5"));
  EXPECT_THAT(CheckSnapshotInterval(inf).message(), HasSubstr("inf"));
}

}  // namespace
}  // namespace qsr
