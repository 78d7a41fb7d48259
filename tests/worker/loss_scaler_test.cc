#include "worker/loss_scaler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace qsr {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A micro-batch whose scaled gradient is `grad * scale` in float: it overflows (inf) when that
// exceeds float's range, as an fp16/fp32 backward would. Records the scales it was called with.
struct ScaledGradient {
  double grad;
  std::vector<double> scales;
  absl::StatusOr<bool> operator()(double scale) {
    scales.push_back(scale);
    const float scaled = static_cast<float>(grad * scale);
    return std::isfinite(scaled / static_cast<float>(scale));
  }
};

TEST(LossScalerTest, StartsAtTheAuthorsScale) {
  LossScaler scaler;
  EXPECT_EQ(scaler.scale(), 65536.0);
  EXPECT_EQ(scaler.steps(), 0);
}

TEST(LossScalerTest, FiniteGradientsTakeOneTryAndKeepTheScale) {
  LossScaler scaler;
  ScaledGradient mb{1.0, {}};
  absl::StatusOr<int> tries = scaler.ComputeMicroBatch(std::ref(mb));
  ASSERT_TRUE(tries.ok()) << tries.status();
  EXPECT_EQ(*tries, 1);
  EXPECT_THAT(mb.scales, ElementsAre(65536.0));
  EXPECT_EQ(scaler.scale(), 65536.0);
  EXPECT_EQ(scaler.overflows(), 0);
}

TEST(LossScalerTest, OverflowRecomputesTheSameMicroBatchAtHalfTheScale) {
  LossScaler scaler;
  // Injected infs: the first three calls overflow, the fourth is finite.
  int calls = 0;
  std::vector<double> scales;
  absl::StatusOr<int> tries = scaler.ComputeMicroBatch([&](double scale) -> absl::StatusOr<bool> {
    scales.push_back(scale);
    return ++calls > 3;
  });
  ASSERT_TRUE(tries.ok()) << tries.status();
  EXPECT_EQ(*tries, 4);
  EXPECT_THAT(scales, ElementsAre(65536.0, 32768.0, 16384.0, 8192.0));
  EXPECT_EQ(scaler.scale(), 8192.0);
  EXPECT_EQ(scaler.overflows(), 3);
  // The next micro-batch starts at the backed-off scale.
  ScaledGradient next{1.0, {}};
  ASSERT_TRUE(scaler.ComputeMicroBatch(std::ref(next)).ok());
  EXPECT_THAT(next.scales, ElementsAre(8192.0));
}

TEST(LossScalerTest, FindsTheLargestScaleThatDoesNotOverflow) {
  LossScaler scaler;
  // grad * scale overflows float (max ~3.4e38) for scale >= 2^12 when grad = 1e35.
  ScaledGradient mb{1e35, {}};
  absl::StatusOr<int> tries = scaler.ComputeMicroBatch(std::ref(mb));
  ASSERT_TRUE(tries.ok()) << tries.status();
  EXPECT_EQ(scaler.scale(), 2048.0);
  EXPECT_EQ(*tries, 6);  // 65536, 32768, 16384, 8192, 4096 overflow; 2048 does not.
  EXPECT_TRUE(std::isfinite(static_cast<float>(1e35 * scaler.scale())));
}

TEST(LossScalerTest, GivesUpAfterMaxTriesWithAClearError) {
  LossScaler scaler;
  int calls = 0;
  absl::StatusOr<int> tries = scaler.ComputeMicroBatch([&](double) -> absl::StatusOr<bool> {
    ++calls;
    return false;  // a NaN loss: no scale helps
  });
  EXPECT_EQ(calls, 50);
  EXPECT_EQ(tries.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(tries.status().message()),
              HasSubstr("inf/NaN in all 50 tries of one micro-batch"));
}

TEST(LossScalerTest, AnErrorOfTheComputationIsReturnedAsIs) {
  LossScaler scaler;
  absl::StatusOr<int> tries = scaler.ComputeMicroBatch(
      [](double) -> absl::StatusOr<bool> { return absl::InternalError("backward failed"); });
  EXPECT_EQ(tries.status(), absl::InternalError("backward failed"));
  EXPECT_EQ(scaler.scale(), 65536.0);
}

TEST(LossScalerTest, GrowsEveryHundredStepsEvenAfterOverflows) {
  LossScaler scaler;
  for (int i = 0; i < 99; ++i) scaler.OnOptimizerStep();
  EXPECT_EQ(scaler.scale(), 65536.0);
  // An overflow in between does not restart the growth period (torch's GradScaler would).
  int calls = 0;
  ASSERT_TRUE(
      scaler.ComputeMicroBatch([&](double) -> absl::StatusOr<bool> { return ++calls > 1; }).ok());
  EXPECT_EQ(scaler.scale(), 32768.0);
  scaler.OnOptimizerStep();
  EXPECT_EQ(scaler.steps(), 100);
  EXPECT_EQ(scaler.scale(), 65536.0);
  for (int i = 0; i < 100; ++i) scaler.OnOptimizerStep();
  EXPECT_EQ(scaler.scale(), 131072.0);
}

TEST(LossScalerTest, OptionsAreHonoured) {
  LossScaler scaler({/*init_scale=*/8.0, /*growth_factor=*/4.0, /*backoff_factor=*/0.25,
                     /*growth_interval=*/2, /*max_tries=*/3});
  int calls = 0;
  absl::StatusOr<int> tries =
      scaler.ComputeMicroBatch([&](double) -> absl::StatusOr<bool> { return ++calls > 2; });
  ASSERT_TRUE(tries.ok());
  EXPECT_EQ(*tries, 3);
  EXPECT_EQ(scaler.scale(), 0.5);
  scaler.OnOptimizerStep();
  scaler.OnOptimizerStep();
  EXPECT_EQ(scaler.scale(), 2.0);
}

}  // namespace
}  // namespace qsr
