// A model's parameters as one 64-bit FNV-1a hash: members that hold the same model after a
// round's average report the same digest, and the coordinator compares them.
//
// Pure function of the tensors' bytes (copied to the CPU); thread-compatible.
#ifndef QSR_WORKER_PARAMS_DIGEST_H_
#define QSR_WORKER_PARAMS_DIGEST_H_

#include <torch/torch.h>

#include <cstdint>

namespace qsr {

uint64_t ParamsDigest(const torch::nn::Module& model);

}  // namespace qsr

#endif  // QSR_WORKER_PARAMS_DIGEST_H_
