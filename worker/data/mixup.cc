#include "worker/data/mixup.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <exception>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

// A standard normal draw (Box-Muller; one of the pair).
double Normal(AugmentRng& rng) {
  const double u1 = 1.0 - rng.Uniform();  // in (0, 1]
  const double u2 = rng.Uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 via Gamma(shape + 1) * U^(1/shape).
double Gamma(double shape, AugmentRng& rng) {
  if (shape < 1.0) {
    const double u = 1.0 - rng.Uniform();  // in (0, 1]
    return Gamma(shape + 1.0, rng) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = Normal(rng);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    const double u = 1.0 - rng.Uniform();
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

}  // namespace

double SampleBeta(double a, double b, AugmentRng& rng) {
  const double ga = Gamma(a, rng);
  const double gb = Gamma(b, rng);
  if (ga + gb <= 0.0) return rng.Bernoulli(a / (a + b)) ? 1.0 : 0.0;  // both underflowed
  return ga / (ga + gb);
}

absl::StatusOr<MixupBatch> Mixup(const at::Tensor& x, const at::Tensor& y, double alpha,
                                 uint64_t seed) {
  if (!(alpha > 0.0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(absl::StrCat("mixup: alpha must be > 0, got ", alpha));
  }
  if (!x.defined() || !y.defined() || x.dim() < 1 || y.dim() != 1 || x.size(0) != y.size(0) ||
      x.size(0) == 0) {
    return absl::InvalidArgumentError(
        "mixup: want a non-empty batch x (N x ...) and labels y (N) of the same N");
  }
  try {
    const int64_t n = x.size(0);
    AugmentRng rng(seed);
    MixupBatch out;
    out.lambda = SampleBeta(alpha, alpha, rng);
    out.perm.resize(n);
    std::iota(out.perm.begin(), out.perm.end(), int64_t{0});
    for (int64_t i = n - 1; i > 0; --i) std::swap(out.perm[i], out.perm[rng.UniformInt(0, i)]);
    at::Tensor index = at::empty({n}, at::kLong);
    std::copy(out.perm.begin(), out.perm.end(), index.data_ptr<int64_t>());
    index = index.to(x.device(), at::kLong);
    out.x = x.mul(out.lambda).add_(x.index_select(0, index), 1.0 - out.lambda);
    out.y_a = y;
    out.y_b = y.index_select(0, index);
    return out;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("mixup: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("mixup: ", e.what()));
  }
}

}  // namespace qsr
