#include "worker/data/batch_loader.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace qsr {
namespace {

// N examples of shape 1x4x4 whose pixels encode the example index; labels index % 10.
Dataset Synthetic(int64_t n) {
  Dataset d;
  d.images = at::arange(n * 16, at::kFloat).reshape({n, 1, 4, 4});
  d.labels = at::arange(n, at::kLong).remainder(10);
  d.num_classes = 10;
  return d;
}

SamplerConfig Cfg(int rank, int world, int64_t local_batch, int64_t steps_per_epoch = 0) {
  SamplerConfig c;
  c.seed = 11;
  c.rank = rank;
  c.world = world;
  c.local_batch = local_batch;
  c.steps_per_epoch = steps_per_epoch;
  return c;
}

// The batch of `step` computed directly: the sampler's indices and index_select.
void ExpectDirectGather(const Dataset& d, const SamplerConfig& config, const Batch& batch,
                        int64_t step) {
  absl::StatusOr<ShardSampler> sampler = ShardSampler::Create(d.size(), config);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  std::vector<int64_t> idx = sampler->BatchIndices(step);
  const at::Tensor index = at::tensor(idx, at::kLong);
  EXPECT_EQ(batch.step, step);
  EXPECT_EQ(batch.epoch, step / sampler->steps_per_epoch());
  ASSERT_EQ(batch.x.sizes(), (at::IntArrayRef{config.local_batch, 1, 4, 4}));
  EXPECT_TRUE(batch.x.is_contiguous());
  EXPECT_TRUE(at::equal(batch.x, d.images.index_select(0, index))) << "step " << step;
  EXPECT_TRUE(at::equal(batch.y, d.labels.index_select(0, index))) << "step " << step;
}

class BatchLoaderTest : public ::testing::TestWithParam<int> {};  // param: prefetch

TEST_P(BatchLoaderTest, BatchesEqualDirectGatherAcrossEpochs) {
  const Dataset d = Synthetic(103);
  const SamplerConfig config = Cfg(1, 3, 5);  // 6 steps per epoch
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader = BatchLoader::Create(d, config, GetParam());
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ((*loader)->steps_per_epoch(), 6);
  EXPECT_EQ((*loader)->local_batch(), 5);
  // Keep every batch alive: the pool must not overwrite a batch the caller still holds.
  std::vector<Batch> held;
  for (int64_t step = 0; step < 20; ++step) {
    EXPECT_EQ((*loader)->next_step(), step);
    absl::StatusOr<Batch> b = (*loader)->Next();
    ASSERT_TRUE(b.ok()) << b.status();
    held.push_back(*std::move(b));
  }
  for (int64_t step = 0; step < 20; ++step) ExpectDirectGather(d, config, held[step], step);
}

TEST_P(BatchLoaderTest, ReusesBuffersOnlyOnceReleased) {
  const Dataset d = Synthetic(64);
  const SamplerConfig config = Cfg(0, 1, 8);
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader = BatchLoader::Create(d, config, GetParam());
  ASSERT_TRUE(loader.ok()) << loader.status();
  BatchLoader& l = **loader;
  absl::StatusOr<ShardSampler> sampler = ShardSampler::Create(d.size(), config);
  ASSERT_TRUE(sampler.ok());
  std::set<const void*> buffers;
  for (int64_t step = 0; step < 30; ++step) {
    at::Tensor view;
    {
      absl::StatusOr<Batch> b = l.Next();
      ASSERT_TRUE(b.ok()) << b.status();
      ExpectDirectGather(d, config, *b, step);
      buffers.insert(b->x.data_ptr());
      // A view that outlives its batch must keep the storage from being reused.
      view = b->x.view({8, 16});
    }
    for (int k = 0; k < 8; ++k) ASSERT_TRUE(l.Next().ok());  // would overwrite a reused buffer
    const at::Tensor want =
        d.images.index_select(0, at::tensor(sampler->BatchIndices(step), at::kLong));
    EXPECT_TRUE(at::equal(view, want.view({8, 16}))) << step;
    ASSERT_TRUE(l.Seek(step + 1).ok());
  }
  // Released buffers come back from the pool instead of fresh allocations.
  EXPECT_LE(buffers.size(), static_cast<size_t>(GetParam() + 4 + 1));
}

TEST_P(BatchLoaderTest, SeekRestartsAtTheGivenStep) {
  const Dataset d = Synthetic(200);
  const SamplerConfig config = Cfg(2, 4, 6);  // 8 steps per epoch
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(d, config, GetParam(), /*start_step=*/5);
  ASSERT_TRUE(loader.ok()) << loader.status();
  BatchLoader& l = **loader;
  absl::StatusOr<Batch> b = l.Next();
  ASSERT_TRUE(b.ok());
  ExpectDirectGather(d, config, *b, 5);
  for (int64_t target : {40, 3, 3, 17, 0}) {
    ASSERT_TRUE(l.Seek(target).ok());
    EXPECT_EQ(l.next_step(), target);
    for (int64_t k = 0; k < 3; ++k) {
      b = l.Next();
      ASSERT_TRUE(b.ok()) << b.status();
      ExpectDirectGather(d, config, *b, target + k);
    }
  }
  EXPECT_EQ(l.Seek(-1).code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(BatchLoaderTest, DestructionWhilePrefetchingIsClean) {
  const Dataset d = Synthetic(4096);
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
        BatchLoader::Create(d, Cfg(0, 1, 1024), GetParam());
    ASSERT_TRUE(loader.ok());
    if (i % 3 == 1) {
      ASSERT_TRUE((*loader)->Next().ok());
    } else if (i % 3 == 2) {
      ASSERT_TRUE((*loader)->Seek(1000).ok());
    }
    // Destroyed here, typically mid-gather or with a full queue.
  }
}

INSTANTIATE_TEST_SUITE_P(Prefetch, BatchLoaderTest, ::testing::Values(0, 1, 2, 4));

TEST(BatchLoaderCreateTest, RejectsBadArguments) {
  const Dataset d = Synthetic(10);
  EXPECT_EQ(BatchLoader::Create(d, Cfg(0, 1, 2), -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchLoader::Create(d, Cfg(0, 1, 2), 65).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchLoader::Create(d, Cfg(0, 1, 2), 2, -3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchLoader::Create(d, Cfg(0, 1, 11)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchLoader::Create(Dataset{}, Cfg(0, 1, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  Dataset mismatched = d;
  mismatched.labels = mismatched.labels.slice(0, 0, 5);
  EXPECT_EQ(BatchLoader::Create(mismatched, Cfg(0, 1, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BatchLoaderCreateTest, AcceptsNonContiguousImages) {
  Dataset d = Synthetic(40);
  d.images = d.images.transpose(2, 3);  // not contiguous
  const SamplerConfig config = Cfg(0, 2, 4);
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader = BatchLoader::Create(d, config);
  ASSERT_TRUE(loader.ok()) << loader.status();
  absl::StatusOr<Batch> b = (*loader)->Next();
  ASSERT_TRUE(b.ok());
  ExpectDirectGather(d, config, *b, 0);
}

}  // namespace
}  // namespace qsr
