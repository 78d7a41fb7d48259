#include "worker/data/sampler.h"

#include <cstring>
#include <numeric>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

// A uniform draw from [0, bound) (bound >= 1) by rejection, so it is unbiased and, unlike
// std::uniform_int_distribution, specified exactly (the same on every standard library).
uint64_t UniformBelow(std::mt19937_64& gen, uint64_t bound) {
  // Reject the lowest 2^64 mod bound values so the rest split evenly into `bound` classes.
  const uint64_t threshold = (0 - bound) % bound;
  while (true) {
    const uint64_t r = gen();
    if (r >= threshold) return r % bound;
  }
}

}  // namespace

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t ExampleKey(uint64_t seed, int64_t step, int64_t position) {
  return SplitMix64(SplitMix64(SplitMix64(seed ^ 0x61756721u) ^ static_cast<uint64_t>(step)) ^
                    static_cast<uint64_t>(position));
}

uint64_t AugmentRng::Next() {
  state_ += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double AugmentRng::Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

double AugmentRng::Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }

int64_t AugmentRng::UniformInt(int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  if (span == 0) return static_cast<int64_t>(Next());  // the full 64-bit range
  // Rejection for an unbiased draw, as UniformBelow.
  const uint64_t threshold = (0 - span) % span;
  while (true) {
    const uint64_t r = Next();
    if (r >= threshold) return lo + static_cast<int64_t>(r % span);
  }
}

std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(n > 0 ? n : 0);
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::mt19937_64 gen(SplitMix64(SplitMix64(seed) ^ static_cast<uint64_t>(epoch)));
  // Fisher-Yates, from the back: swap perm[i] with a uniform perm[j], j in [0, i].
  for (int64_t i = static_cast<int64_t>(perm.size()) - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(UniformBelow(gen, static_cast<uint64_t>(i) + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

int64_t MaxStepsPerEpoch(int64_t dataset_size, int world, int64_t local_batch) {
  if (world <= 0 || local_batch <= 0 || dataset_size <= 0) return 0;
  return dataset_size / (static_cast<int64_t>(world) * local_batch);
}

absl::Status ValidateSamplerConfig(const SamplerConfig& config, int64_t dataset_size) {
  if (dataset_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: dataset is empty (size ", dataset_size, ")"));
  }
  if (config.world < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: world must be >= 1, got ", config.world));
  }
  if (config.rank < 0 || config.rank >= config.world) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: rank must be in [0, ", config.world, "), got ", config.rank));
  }
  if (config.local_batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: local_batch must be >= 1, got ", config.local_batch));
  }
  const int64_t max_steps = MaxStepsPerEpoch(dataset_size, config.world, config.local_batch);
  if (max_steps < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: global batch world*local_batch = ", config.world, "*",
                     config.local_batch, " exceeds the dataset size ", dataset_size));
  }
  if (config.steps_per_epoch < 0 || config.steps_per_epoch > max_steps) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: steps_per_epoch must be in [0, ", max_steps, "] (0 = ", max_steps,
                     ") for dataset size ", dataset_size, ", world ", config.world,
                     ", local_batch ", config.local_batch, "; got ", config.steps_per_epoch));
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardSampler> ShardSampler::Create(int64_t dataset_size,
                                                  const SamplerConfig& config) {
  if (absl::Status s = ValidateSamplerConfig(config, dataset_size); !s.ok()) return s;
  SamplerConfig resolved = config;
  if (resolved.steps_per_epoch == 0) {
    resolved.steps_per_epoch = MaxStepsPerEpoch(dataset_size, config.world, config.local_batch);
  }
  return ShardSampler(dataset_size, resolved);
}

const std::vector<int64_t>& ShardSampler::PermutationFor(int64_t epoch) {
  if (epoch != cached_epoch_) {
    perm_ = EpochPermutation(dataset_size_, config_.seed, epoch);
    cached_epoch_ = epoch;
  }
  return perm_;
}

void ShardSampler::BatchIndices(int64_t step, int64_t* out) {
  const int64_t epoch = step / config_.steps_per_epoch;
  const int64_t i = step % config_.steps_per_epoch;
  const std::vector<int64_t>& perm = PermutationFor(epoch);
  const int64_t begin = (i * config_.world + config_.rank) * config_.local_batch;
  std::memcpy(out, perm.data() + begin, sizeof(int64_t) * config_.local_batch);
}

std::vector<int64_t> ShardSampler::BatchIndices(int64_t step) {
  std::vector<int64_t> out(config_.local_batch);
  BatchIndices(step, out.data());
  return out;
}

}  // namespace qsr
