// The training step's loss: with mixup_alpha > 0 the loss and its gradient are those of the mixed
// batch against both label sets, recomputed here by hand from the mix's lambda and permutation.
#include "worker/training_loss.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

#include "gtest/gtest.h"
#include "worker/data/mixup.h"
#include "worker/model/models.h"

namespace qsr {
namespace {

struct Fixture {
  std::shared_ptr<Model> model;
  torch::Tensor x, y;
};

Fixture Make() {
  torch::manual_seed(7);
  absl::StatusOr<std::shared_ptr<Model>> model = MakeModel("mlp", 10);
  EXPECT_TRUE(model.ok());
  Fixture f;
  f.model = *model;
  f.x = torch::randn({16, 1, 28, 28});
  f.y = torch::randint(10, {16}, torch::kLong);
  return f;
}

std::vector<torch::Tensor> Grads(Model& model) {
  std::vector<torch::Tensor> g;
  for (const torch::Tensor& p : model.parameters()) g.push_back(p.grad().clone());
  return g;
}

TEST(TrainingLossTest, WithoutMixupIsCrossEntropy) {
  Fixture f = Make();
  torch::Tensor loss = TrainingLoss(*f.model, f.x, f.y, {0.1, 0.0}, 123);
  torch::Tensor want = torch::nn::functional::cross_entropy(
      f.model->forward(f.x), f.y,
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1));
  // Two forward passes in float32 may differ in the last bit (LibTorch's parallel reductions).
  EXPECT_NEAR(loss.item<double>(), want.item<double>(), 1e-6 * std::abs(want.item<double>()));
}

TEST(TrainingLossTest, MixupLossAndGradientMatchAHandMadeMix) {
  Fixture f = Make();
  const LossOptions options{0.1, 0.2};
  // Beta(0.2, 0.2) mostly draws lambda near 0 or 1, where a mix is hardly visible: take the
  // first step whose draw mixes well (deterministic).
  uint64_t seed = 0;
  for (int64_t step = 0; step < 1000; ++step) {
    seed = MixupSeed(3, step, 1, 2, 0);
    absl::StatusOr<MixupBatch> d = Mixup(f.x, f.y, options.mixup_alpha, seed);
    ASSERT_TRUE(d.ok());
    if (d->lambda > 0.25 && d->lambda < 0.75) break;
  }
  f.model->zero_grad();
  torch::Tensor loss = TrainingLoss(*f.model, f.x, f.y, options, seed);
  loss.backward();
  const std::vector<torch::Tensor> mixed_grads = Grads(*f.model);

  // The reference: the same lambda and permutation, mixed example by example.
  absl::StatusOr<MixupBatch> draw = Mixup(f.x, f.y, options.mixup_alpha, seed);
  ASSERT_TRUE(draw.ok());
  const double lambda = draw->lambda;
  ASSERT_GT(lambda, 0.25);
  ASSERT_LT(lambda, 0.75);
  std::vector<torch::Tensor> rows;
  std::vector<int64_t> y_b;
  for (int64_t i = 0; i < 16; ++i) {
    const int64_t j = draw->perm[static_cast<size_t>(i)];
    rows.push_back(f.x[i] * lambda + f.x[j] * (1.0 - lambda));
    y_b.push_back(f.y[j].item<int64_t>());
  }
  const torch::Tensor x_ref = torch::stack(rows);
  const torch::Tensor y_b_ref = torch::tensor(y_b, torch::kLong);
  const auto ce = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1);
  f.model->zero_grad();
  const torch::Tensor logits = f.model->forward(x_ref);
  torch::Tensor want = lambda * torch::nn::functional::cross_entropy(logits, f.y, ce) +
                       (1.0 - lambda) * torch::nn::functional::cross_entropy(logits, y_b_ref, ce);
  want.backward();
  EXPECT_NEAR(loss.item<double>(), want.item<double>(), 1e-5);
  const std::vector<torch::Tensor> want_grads = Grads(*f.model);
  for (size_t k = 0; k < want_grads.size(); ++k) {
    EXPECT_TRUE(torch::allclose(mixed_grads[k], want_grads[k], 1e-4, 1e-6)) << "parameter " << k;
  }

  // ... and it is not the unmixed loss or gradient.
  f.model->zero_grad();
  torch::Tensor plain = TrainingLoss(*f.model, f.x, f.y, {0.1, 0.0}, seed);
  plain.backward();
  EXPECT_GT(std::abs(plain.item<double>() - loss.item<double>()), 1e-3);
  EXPECT_FALSE(torch::allclose(Grads(*f.model)[0], mixed_grads[0], 1e-3, 1e-5));
}

TEST(TrainingLossTest, MixSeedsDifferPerStepRankAndMicroBatch) {
  std::set<uint64_t> seeds;
  for (int64_t step : {0, 1})
    for (int rank : {0, 1})
      for (int64_t micro : {0, 1}) seeds.insert(MixupSeed(5, step, rank, 2, micro));
  EXPECT_EQ(seeds.size(), 8u);
  EXPECT_EQ(MixupSeed(5, 9, 1, 2, 1), MixupSeed(5, 9, 1, 2, 1));
}

TEST(TrainingLossTest, ModelRngSeedMakesDropoutAFunctionOfTheStep) {
  std::set<uint64_t> seeds;
  for (int64_t step : {0, 1, 2})
    for (int rank : {0, 1}) seeds.insert(ModelRngSeed(5, step, rank));
  EXPECT_EQ(seeds.size(), 6u);
  EXPECT_NE(ModelRngSeed(5, 0, 0), MixupSeed(5, 0, 0, 1, 0));
  // The same step draws the same dropout mask whatever ran before it.
  torch::nn::Dropout drop(0.5);
  torch::manual_seed(ModelRngSeed(5, 7, 1));
  const torch::Tensor a = drop(torch::ones({64}));
  torch::rand({1000});
  torch::manual_seed(ModelRngSeed(5, 7, 1));
  EXPECT_TRUE(torch::equal(drop(torch::ones({64})), a));
  torch::manual_seed(ModelRngSeed(5, 8, 1));
  EXPECT_FALSE(torch::equal(drop(torch::ones({64})), a));
}

TEST(TrainingLossTest, BadMixupThrows) {
  Fixture f = Make();
  EXPECT_THROW(TrainingLoss(*f.model, f.x, f.y.slice(0, 0, 3), {0.0, 0.2}, 1), std::exception);
}

}  // namespace
}  // namespace qsr
