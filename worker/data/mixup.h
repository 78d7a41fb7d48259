// Mixup (Zhang et al. 2018), as the authors' ViT runs apply it to each micro-batch (alpha 0.2):
//   lambda ~ Beta(alpha, alpha), perm a uniform permutation of the batch,
//   x_mixed = lambda * x + (1 - lambda) * x[perm],  y_a = y,  y_b = y[perm],
//   loss = lambda * CE(logits, y_a) + (1 - lambda) * CE(logits, y_b)   (with any label smoothing).
// lambda and perm are drawn from AugmentRng(seed) by our own Beta sampler and Fisher-Yates
// shuffle, so they are the same on every platform; derive the seed from (seed, step, rank,
// micro-batch), e.g. ExampleKey(seed, step, rank * micro_batches + micro).
//
// Thread-safe (no shared state). Nothing throws.
#ifndef QSR_WORKER_DATA_MIXUP_H_
#define QSR_WORKER_DATA_MIXUP_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/sampler.h"

namespace qsr {

struct MixupBatch {
  at::Tensor x;    // mixed images, same shape, dtype and device as the input
  at::Tensor y_a;  // the input labels
  at::Tensor y_b;  // the labels of the examples mixed in (y[perm])
  double lambda = 1.0;
  std::vector<int64_t> perm;
};

// A draw from Beta(a, b) (a, b > 0), as G_a / (G_a + G_b) with Marsaglia-Tsang gamma draws.
double SampleBeta(double a, double b, AugmentRng& rng);

// Mixes batch x (N x ..., floating point, any device) with labels y (N, int64, same device).
// InvalidArgument for alpha <= 0, an empty batch, or mismatched sizes; Internal for a LibTorch
// error. x and y are not modified.
absl::StatusOr<MixupBatch> Mixup(const at::Tensor& x, const at::Tensor& y, double alpha,
                                 uint64_t seed);

}  // namespace qsr

#endif  // QSR_WORKER_DATA_MIXUP_H_
