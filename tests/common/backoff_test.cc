#include "common/backoff.h"

#include <algorithm>
#include <random>

#include "gtest/gtest.h"

namespace qsr {
namespace {

TEST(BackoffTest, DoublesFromTheBaseUpToTheCap) {
  const BackoffPolicy b{absl::Milliseconds(50), absl::Seconds(2), 0};
  EXPECT_EQ(BackoffDelay(b, 0), absl::Milliseconds(50));
  EXPECT_EQ(BackoffDelay(b, 1), absl::Milliseconds(100));
  EXPECT_EQ(BackoffDelay(b, 5), absl::Milliseconds(1600));
  EXPECT_EQ(BackoffDelay(b, 6), absl::Seconds(2));  // 3.2 s, capped
  EXPECT_EQ(BackoffDelay(b, 1000000), absl::Seconds(2));
}

TEST(BackoffTest, NegativeAttemptsCountAsTheFirst) {
  const BackoffPolicy b{absl::Seconds(1), absl::Seconds(30), 0};
  EXPECT_EQ(BackoffDelay(b, -3), absl::Seconds(1));
}

TEST(BackoffTest, ACapEqualToTheBaseWaitsTheSameEveryTime) {
  const BackoffPolicy b{absl::Milliseconds(500), absl::Milliseconds(500), 0};
  for (int attempt = 0; attempt < 10; ++attempt) {
    EXPECT_EQ(BackoffDelay(b, attempt), absl::Milliseconds(500));
  }
}

TEST(BackoffTest, JitterSpreadsWaitsAroundTheDelayWithinItsBounds) {
  const BackoffPolicy b{absl::Milliseconds(100), absl::Seconds(1), 0.25};
  std::mt19937_64 random(11);
  absl::Duration min = absl::InfiniteDuration(), max = absl::ZeroDuration();
  for (int i = 0; i < 5000; ++i) {
    const absl::Duration d = BackoffDelay(b, 2, random);  // 400 ms before jitter
    ASSERT_GE(d, absl::Milliseconds(300));
    ASSERT_LE(d, absl::Milliseconds(500));
    min = std::min(min, d);
    max = std::max(max, d);
  }
  // Spread over the interval, not one value.
  EXPECT_LT(min, absl::Milliseconds(320));
  EXPECT_GT(max, absl::Milliseconds(480));
  // Capped before jitter: at most cap x 1.25.
  for (int i = 0; i < 1000; ++i) ASSERT_LE(BackoffDelay(b, 40, random), absl::Milliseconds(1250));
}

TEST(BackoffTest, NoJitterDrawsNothing) {
  const BackoffPolicy b{absl::Milliseconds(100), absl::Seconds(1), 0};
  std::mt19937_64 random(3);
  EXPECT_EQ(BackoffDelay(b, 3, random), absl::Milliseconds(800));
}

TEST(BackoffTest, ValidationNamesTheBadField) {
  EXPECT_TRUE(ValidateBackoff({absl::Milliseconds(1), absl::Milliseconds(1), 0}).ok());
  absl::Status s = ValidateBackoff({absl::ZeroDuration(), absl::Seconds(1), 0});
  EXPECT_NE(s.message().find("base"), absl::string_view::npos) << s;
  s = ValidateBackoff({absl::Seconds(2), absl::Seconds(1), 0});
  EXPECT_NE(s.message().find("cap"), absl::string_view::npos) << s;
  s = ValidateBackoff({absl::Seconds(1), absl::Seconds(2), 1.0});
  EXPECT_NE(s.message().find("jitter"), absl::string_view::npos) << s;
  EXPECT_FALSE(ValidateBackoff({absl::Seconds(1), absl::Seconds(2), -0.1}).ok());
}

TEST(BackoffTest, PeriodicWaitsAreSpreadOverThreeQuartersToFiveQuartersOfTheInterval) {
  std::mt19937_64 random(7);
  const absl::Duration interval = absl::Seconds(1);
  const BackoffPolicy periodic{interval, interval, kPeriodicJitter};
  absl::Duration min = absl::InfiniteDuration(), max = absl::ZeroDuration(), sum;
  constexpr int kDraws = 10000;
  for (int i = 0; i < kDraws; ++i) {
    absl::Duration d = BackoffDelay(periodic, 0, random);
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
  const absl::Duration short_interval = absl::Milliseconds(100);
  EXPECT_LE(BackoffDelay({short_interval, short_interval, kPeriodicJitter}, 0, random),
            absl::Milliseconds(125));
}

}  // namespace
}  // namespace qsr
