// CheckSameDevice: the flat buffers of ModelAverager and GradientBucketer live on one device, so
// every tensor they are built from must be on the device of the first one.
#ifndef QSR_WORKER_COMM_SAME_DEVICE_H_
#define QSR_WORKER_COMM_SAME_DEVICE_H_

#include <torch/torch.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsr {

// Walking a list of tensors: the first call sets `*device` to `t`'s device; a later `t` on another
// device is INVALID_ARGUMENT "<what> <index> is on <its device>, the first one on <device>".
inline absl::Status CheckSameDevice(const torch::Tensor& t, size_t index, const std::string& what,
                                    c10::optional<torch::Device>* device) {
  if (!device->has_value()) {
    *device = t.device();
    return absl::OkStatus();
  }
  if (t.device() == **device) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(what, " ", index, " is on ", t.device().str(),
                                                 ", the first one on ", (*device)->str()));
}

}  // namespace qsr

#endif  // QSR_WORKER_COMM_SAME_DEVICE_H_
