#include "worker/data/batch_loader.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
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

// Synthetic N x 3 x 8 x 8 images whose pixels encode (example, position); labels index % 10.
Dataset Images(int64_t n) {
  Dataset d;
  d.images = at::arange(n * 192, at::kFloat).reshape({n, 3, 8, 8});
  d.labels = at::arange(n, at::kLong).remainder(10);
  d.num_classes = 10;
  d.black = {-1.0f, -2.0f, -3.0f};
  return d;
}

std::shared_ptr<const DataSource> Augmented(const Dataset& d) {
  absl::StatusOr<std::shared_ptr<const DataSource>> s = MakeTensorSource(d, TensorAugment{2, true});
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : nullptr;
}

std::vector<Batch> Take(BatchLoader& loader, int n) {
  std::vector<Batch> out;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<Batch> b = loader.Next();
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) break;
    out.push_back(*std::move(b));
  }
  return out;
}

std::unique_ptr<BatchLoader> MakeLoader(std::shared_ptr<const DataSource> source,
                                        const SamplerConfig& config, int nw, int prefetch,
                                        uint64_t augment_seed, int64_t start_step = 0) {
  LoaderOptions o;
  o.num_workers = nw;
  o.prefetch = prefetch;
  o.augment_seed = augment_seed;
  o.start_step = start_step;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader = BatchLoader::Create(source, config, o);
  EXPECT_TRUE(loader.ok()) << loader.status();
  return loader.ok() ? *std::move(loader) : nullptr;
}

TEST(AugmentedLoaderTest, ExamplesAreTheSourcesWithTheirKeys) {
  const Dataset d = Images(50);
  std::shared_ptr<const DataSource> source = Augmented(d);
  const SamplerConfig config = Cfg(1, 2, 4);
  std::unique_ptr<BatchLoader> loader = MakeLoader(source, config, 2, 2, 99);
  ASSERT_NE(loader, nullptr);
  absl::StatusOr<ShardSampler> sampler = ShardSampler::Create(d.size(), config);
  ASSERT_TRUE(sampler.ok());
  std::vector<float> want(192);
  for (const Batch& b : Take(*loader, 8)) {
    const std::vector<int64_t> idx = sampler->BatchIndices(b.step);
    for (int64_t j = 0; j < 4; ++j) {
      // Position in the global batch: rank 1 of local batch 4 starts at 4.
      const uint64_t key = ExampleKey(99, b.step, 4 + j);
      absl::StatusOr<int64_t> label = source->Example(idx[j], key, want.data());
      ASSERT_TRUE(label.ok());
      EXPECT_EQ(b.y[j].item<int64_t>(), *label);
      EXPECT_TRUE(at::equal(b.x[j], at::from_blob(want.data(), {3, 8, 8}))) << b.step << " " << j;
    }
  }
}

TEST(AugmentedLoaderTest, ThreadsSeeksAndRestartsGiveTheSameBatches) {
  const Dataset d = Images(64);
  std::shared_ptr<const DataSource> source = Augmented(d);
  const SamplerConfig config = Cfg(0, 1, 8);  // 8 steps per epoch
  std::unique_ptr<BatchLoader> base = MakeLoader(source, config, 1, 0, 5);
  ASSERT_NE(base, nullptr);
  const std::vector<Batch> want = Take(*base, 20);
  ASSERT_EQ(want.size(), 20u);
  for (const auto& [nw, prefetch] : {std::pair{2, 0}, std::pair{4, 2}, std::pair{3, 1}}) {
    std::unique_ptr<BatchLoader> loader = MakeLoader(source, config, nw, prefetch, 5);
    ASSERT_NE(loader, nullptr);
    const std::vector<Batch> got = Take(*loader, 20);
    ASSERT_EQ(got.size(), 20u);
    for (size_t s = 0; s < got.size(); ++s) {
      EXPECT_TRUE(at::equal(got[s].x, want[s].x)) << "nw " << nw << " step " << s;
    }
    // Seeking back, and a loader started at step 13 (a resumed run), replay the same batches.
    ASSERT_TRUE(loader->Seek(3).ok());
    EXPECT_TRUE(at::equal(Take(*loader, 1)[0].x, want[3].x));
    std::unique_ptr<BatchLoader> resumed = MakeLoader(source, config, nw, prefetch, 5, 13);
    EXPECT_TRUE(at::equal(Take(*resumed, 1)[0].x, want[13].x));
  }
  // The augmentation seed matters; the same example differs between epochs.
  std::unique_ptr<BatchLoader> other = MakeLoader(source, config, 1, 0, 6);
  EXPECT_FALSE(at::equal(Take(*other, 1)[0].x, want[0].x));
}

TEST(AugmentedLoaderTest, GlobalBatchDoesNotDependOnTheSplit) {
  const Dataset d = Images(96);
  std::shared_ptr<const DataSource> source = Augmented(d);
  std::unique_ptr<BatchLoader> whole = MakeLoader(source, Cfg(0, 1, 12), 1, 0, 8);
  std::unique_ptr<BatchLoader> first = MakeLoader(source, Cfg(0, 3, 4), 2, 1, 8);
  std::unique_ptr<BatchLoader> second = MakeLoader(source, Cfg(1, 3, 4), 1, 0, 8);
  std::unique_ptr<BatchLoader> third = MakeLoader(source, Cfg(2, 3, 4), 3, 2, 8);
  for (int step = 0; step < 10; ++step) {
    const at::Tensor global = Take(*whole, 1)[0].x;
    const at::Tensor parts =
        at::cat({Take(*first, 1)[0].x, Take(*second, 1)[0].x, Take(*third, 1)[0].x}, 0);
    EXPECT_TRUE(at::equal(global, parts)) << step;
  }
}

TEST(SequentialLoaderTest, CoversTheRangeInOrderThenEnds) {
  const Dataset d = Synthetic(23);
  absl::StatusOr<std::shared_ptr<const DataSource>> source = MakeTensorSource(d);
  ASSERT_TRUE(source.ok());
  for (int prefetch : {0, 2}) {
    LoaderOptions o;
    o.prefetch = prefetch;
    o.num_workers = 2;
    absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
        BatchLoader::CreateSequential(*source, 2, 23, 6, o);
    ASSERT_TRUE(loader.ok()) << loader.status();
    EXPECT_EQ((*loader)->steps_per_epoch(), 4);
    std::vector<at::Tensor> xs, ys;
    for (const Batch& b : Take(**loader, 4)) {
      EXPECT_EQ(b.epoch, 0);
      xs.push_back(b.x);
      ys.push_back(b.y);
    }
    ASSERT_EQ(xs.size(), 4u);
    EXPECT_EQ(xs[3].size(0), 3);  // 21 examples: 6 + 6 + 6 + 3
    EXPECT_TRUE(at::equal(at::cat(xs), d.images.slice(0, 2, 23)));
    EXPECT_TRUE(at::equal(at::cat(ys), d.labels.slice(0, 2, 23)));
    EXPECT_EQ((*loader)->Next().status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ((*loader)->Next().status().code(), absl::StatusCode::kOutOfRange);
    ASSERT_TRUE((*loader)->Seek(1).ok());
    EXPECT_TRUE(at::equal(Take(**loader, 1)[0].x, d.images.slice(0, 8, 14)));
  }
  EXPECT_EQ(BatchLoader::CreateSequential(*source, 5, 5, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchLoader::CreateSequential(*source, 0, 24, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchLoader::CreateSequential(nullptr, 0, 4, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A source whose example `bad` fails and whose examples take `delay` each; records the threads.
class FakeSource : public DataSource {
 public:
  FakeSource(int64_t n, int64_t bad, std::chrono::microseconds delay)
      : n_(n), bad_(bad), delay_(delay) {}
  int64_t size() const override { return n_; }
  int64_t num_classes() const override { return 2; }
  std::vector<int64_t> example_shape() const override { return {2}; }
  std::string Describe() const override { return "fake"; }
  absl::StatusOr<int64_t> Example(int64_t index, uint64_t, float* out) const override {
    std::this_thread::sleep_for(delay_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads_.insert(std::this_thread::get_id());
    }
    if (index == bad_) return absl::DataLossError("/data/broken.jpg: corrupt");
    out[0] = static_cast<float>(index);
    out[1] = -1;
    return index % 2;
  }
  size_t threads() const {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_.size();
  }

 private:
  const int64_t n_, bad_;
  const std::chrono::microseconds delay_;
  mutable std::mutex mu_;
  mutable std::set<std::thread::id> threads_;
};

TEST(LoaderThreadsTest, HelpersShareTheWorkAndErrorsNameTheExample) {
  auto fake = std::make_shared<FakeSource>(64, 20, std::chrono::microseconds(2000));
  LoaderOptions o;
  o.num_workers = 3;
  o.prefetch = 0;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::CreateSequential(fake, 0, 64, 16, o);
  ASSERT_TRUE(loader.ok()) << loader.status();
  absl::StatusOr<Batch> b = (*loader)->Next();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->x[15][0].item<float>(), 15.0f);
  EXPECT_GE(fake->threads(), 2u);  // 32 ms of work: the helpers joined in
  for (int i = 0; i < 2; ++i) {    // the failing batch, and the error repeats
    absl::StatusOr<Batch> bad = (*loader)->Next();
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
    EXPECT_NE(bad.status().message().find("example 20"), absl::string_view::npos);
    EXPECT_NE(bad.status().message().find("/data/broken.jpg"), absl::string_view::npos);
  }
  ASSERT_TRUE((*loader)->Seek(2).ok());
  ASSERT_TRUE((*loader)->Next().ok());
}

TEST(LoaderThreadsTest, DestructionDuringSlowBatchesIsQuick) {
  auto fake = std::make_shared<FakeSource>(4096, -1, std::chrono::microseconds(5000));
  for (int i = 0; i < 4; ++i) {
    LoaderOptions o;
    o.num_workers = 4;
    o.prefetch = 2;
    absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
        BatchLoader::Create(fake, Cfg(0, 1, 1024), o);  // ~1.3 s per batch with 4 threads
    ASSERT_TRUE(loader.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto start = std::chrono::steady_clock::now();
    loader->reset();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
  }
}

TEST(BatchLoaderCreateTest, RejectsBadLoaderOptions) {
  absl::StatusOr<std::shared_ptr<const DataSource>> source = MakeTensorSource(Synthetic(10));
  ASSERT_TRUE(source.ok());
  LoaderOptions o;
  o.num_workers = 0;
  EXPECT_EQ(BatchLoader::Create(*source, Cfg(0, 1, 2), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.num_workers = 65;
  EXPECT_EQ(BatchLoader::Create(*source, Cfg(0, 1, 2), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchLoader::Create(std::shared_ptr<const DataSource>(), Cfg(0, 1, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.num_workers = 1;
  o.pin_memory = true;
  absl::StatusOr<std::unique_ptr<BatchLoader>> pinned =
      BatchLoader::Create(*source, Cfg(0, 1, 2), o);
  if (pinned.ok()) {  // a CUDA build with a GPU
    absl::StatusOr<Batch> b = (*pinned)->Next();
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(b->x.is_pinned());
  } else {
    EXPECT_EQ(pinned.status().code(), absl::StatusCode::kInvalidArgument) << pinned.status();
  }
}

}  // namespace
}  // namespace qsr
