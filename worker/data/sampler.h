// Deterministic data order for data-parallel training: which examples a worker trains on at each
// global step.
//
// Every epoch uses a fresh permutation of the dataset, computed by our own Fisher-Yates shuffle
// over std::mt19937_64 (whose output the C++ standard fixes) with our own unbiased bounded draw, so
// the order is bit-identical on every worker, compiler and platform. The seed of epoch e is
// SplitMix64-mixed from (seed, e).
//
// Layout (interleaved): the local batch of worker `rank` of `world` at global step t is
//   epoch = t / steps_per_epoch, i = t % steps_per_epoch,
//   perm(epoch)[(i * world + rank) * local_batch + j],  j in [0, local_batch).
// So the global batch of step i is the slice perm[i*G, (i+1)*G) with G = world * local_batch:
// shards of different ranks are disjoint, an epoch covers world * local_batch * steps_per_epoch
// distinct examples, and the set of examples in a global step depends only on G (not on how it is
// split among workers). The batch of step t is a function of t alone (no hidden iterator state),
// so restarting or seeking to any step reproduces the same data.
//
// The randomness of data augmentation is specified just as exactly: ExampleKey() derives a key per
// (seed, step, position in the global batch) and AugmentRng draws from it.
#ifndef QSR_WORKER_DATA_SAMPLER_H_
#define QSR_WORKER_DATA_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsr {

// The SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
uint64_t SplitMix64(uint64_t x);

// A permutation of [0, n), a pure function of (n, seed, epoch). n must be >= 0; epoch >= 0.
std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch);

// The augmentation key of the example at `position` in the global batch of `step` (position =
// rank * local_batch + j for the j-th example of worker `rank`): a SplitMix64 mix of the three.
// It depends on the global position, not the rank, so the augmented global batch does not change
// with how it is split among workers.
uint64_t ExampleKey(uint64_t seed, int64_t step, int64_t position);

// A small, fully specified random generator (SplitMix64 sequence) for augmentation: the same
// draws on every platform and standard library. Thread-compatible.
class AugmentRng {
 public:
  explicit AugmentRng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  double Uniform();                                   // in [0, 1), 53 bits
  double Uniform(double lo, double hi);               // in [lo, hi)
  int64_t UniformInt(int64_t lo, int64_t hi);         // in [lo, hi] (REQUIRES: lo <= hi)
  bool Bernoulli(double p) { return Uniform() < p; }  // true with probability p

 private:
  uint64_t state_;
};

struct SamplerConfig {
  uint64_t seed = 0;
  int rank = 0;             // in [0, world)
  int world = 1;            // >= 1
  int64_t local_batch = 0;  // >= 1: examples per worker per step
  // Steps per epoch; 0 means the most that fit: dataset_size / (world * local_batch). Must satisfy
  // steps_per_epoch * world * local_batch <= dataset_size.
  int64_t steps_per_epoch = 0;
};

// The most steps per epoch that fit: floor(dataset_size / (world * local_batch)); 0 when
// world * local_batch <= 0.
int64_t MaxStepsPerEpoch(int64_t dataset_size, int world, int64_t local_batch);

// OK when `config` is usable with a dataset of `dataset_size` examples (including
// steps_per_epoch == 0, which resolves to MaxStepsPerEpoch); InvalidArgument naming the bad field
// otherwise.
absl::Status ValidateSamplerConfig(const SamplerConfig& config, int64_t dataset_size);

// Maps global steps to dataset indices per the layout above. Caches the permutation of the last
// epoch it was asked about, so consecutive steps cost O(local_batch) and an epoch change costs
// one O(n) shuffle.
//
// Thread-compatible: BatchIndices() updates the cache, so use one instance per thread (copies are
// independent).
class ShardSampler {
 public:
  // InvalidArgument if the config does not validate. steps_per_epoch == 0 is resolved here.
  static absl::StatusOr<ShardSampler> Create(int64_t dataset_size, const SamplerConfig& config);

  // Writes the local_batch() indices of global step `step` (>= 0) to out[0, local_batch()).
  void BatchIndices(int64_t step, int64_t* out);
  std::vector<int64_t> BatchIndices(int64_t step);

  int64_t dataset_size() const { return dataset_size_; }
  int64_t steps_per_epoch() const { return config_.steps_per_epoch; }
  int64_t local_batch() const { return config_.local_batch; }
  const SamplerConfig& config() const { return config_; }
  int64_t EpochOf(int64_t step) const { return step / config_.steps_per_epoch; }

 private:
  ShardSampler(int64_t dataset_size, const SamplerConfig& config)
      : dataset_size_(dataset_size), config_(config) {}
  const std::vector<int64_t>& PermutationFor(int64_t epoch);

  int64_t dataset_size_;
  SamplerConfig config_;  // steps_per_epoch resolved (> 0)
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> perm_;
};

}  // namespace qsr

#endif  // QSR_WORKER_DATA_SAMPLER_H_
