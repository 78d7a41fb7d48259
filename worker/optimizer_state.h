// Access to a LibTorch optimizer's per-parameter state across LibTorch versions.
#ifndef QSR_WORKER_OPTIMIZER_STATE_H_
#define QSR_WORKER_OPTIMIZER_STATE_H_

#include <torch/torch.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace qsr {

// The optimizer state's key for a parameter: LibTorch 1.13 keys it by the TensorImpl address
// printed as a string, LibTorch 2.x by the address itself.
template <typename Key>
Key OptimizerStateKey(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << p.unsafeGetTensorImpl();
    return os.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

}  // namespace qsr

#endif  // QSR_WORKER_OPTIMIZER_STATE_H_
