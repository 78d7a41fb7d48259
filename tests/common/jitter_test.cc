#include "common/jitter.h"

#include <random>

#include "gtest/gtest.h"

namespace qsr {
namespace {

TEST(JitterTest, WaitsAreSpreadOverThreeQuartersToFiveQuartersOfTheInterval) {
  std::mt19937_64 random(7);
  const absl::Duration interval = absl::Seconds(1);
  absl::Duration min = absl::InfiniteDuration(), max = absl::ZeroDuration(), sum;
  constexpr int kDraws = 10000;
  for (int i = 0; i < kDraws; ++i) {
    absl::Duration d = Jittered(interval, random);
    ASSERT_GE(d, absl::Milliseconds(750));
    ASSERT_LE(d, absl::Milliseconds(1250));
    min = std::min(min, d);
    max = std::max(max, d);
    sum += d;
  }
  // Spread over the whole range, centred on the interval: senders that start together drift apart.
  EXPECT_LT(min, absl::Milliseconds(760));
  EXPECT_GT(max, absl::Milliseconds(1240));
  EXPECT_NEAR(absl::ToDoubleSeconds(sum / kDraws), 1.0, 0.01);
  // Scales with the interval.
  EXPECT_LE(Jittered(absl::Milliseconds(100), random), absl::Milliseconds(125));
}

}  // namespace
}  // namespace qsr
