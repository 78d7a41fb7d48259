#include "worker/params_digest.h"

#include <cstddef>

namespace qsr {
namespace {

uint64_t Fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

uint64_t ParamsDigest(const torch::nn::Module& model) {
  uint64_t h = 1469598103934665603ULL;
  for (const torch::Tensor& p : model.parameters()) {
    torch::Tensor c = p.detach().contiguous().cpu();
    h = Fnv1a(c.data_ptr(), c.numel() * c.element_size(), h);
  }
  return h;
}

}  // namespace qsr
