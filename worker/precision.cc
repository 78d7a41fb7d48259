#include "worker/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#ifdef QSR_HAVE_NCCL
// The CUDA runtime is linked whenever the NCCL communicator is built (worker/comm).
#include <cuda_runtime_api.h>
#endif

#include "absl/strings/str_cat.h"

// LibTorch 2.4 replaced the per-backend autocast setters (set_enabled, set_cpu_enabled,
// set_autocast_gpu_dtype, ...) with ones that take the device type, and later releases drop the
// old ones.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define QSR_AUTOCAST_BY_DEVICE_TYPE 1
#endif

namespace qsr {
namespace {

bool AutocastEnabled(torch::DeviceType type) {
#ifdef QSR_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void SetAutocastEnabled(torch::DeviceType type, bool enabled) {
#ifdef QSR_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == torch::kCUDA) {
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

torch::ScalarType AutocastDtype(torch::DeviceType type) {
#ifdef QSR_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype()
                              : at::autocast::get_autocast_cpu_dtype();
#endif
}

void SetAutocastDtype(torch::DeviceType type, torch::ScalarType dtype) {
#ifdef QSR_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == torch::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

constexpr char kAllowed[] =
    "allowed: fp32 (default, any device), bf16 (CUDA GPUs of compute capability 8.0 or newer, or "
    "the CPU)";

}  // namespace

absl::Status CheckPrecision(const std::string& precision, const torch::Device& device) {
  if (precision == "fp32") return absl::OkStatus();
  if (precision == "fp16") {
    // worker/loss_scaler.h holds the authors' retrying scaler; the fp16 autocast step that would
    // drive it is not wired into the trainer, so fp16 is refused on every device, CPU included.
    return absl::InvalidArgumentError(absl::StrCat(
        "precision: fp16 cannot train on device ", device.str(),
        " (fp16 autocast with loss scaling is not wired into the training step; on the CPU it "
        "would not be supported at all); ",
        kAllowed));
  }
  if (precision != "bf16") {
    return absl::InvalidArgumentError(
        absl::StrCat("precision \"", precision, "\" is not supported; ", kAllowed));
  }
  if (device.is_cpu()) return absl::OkStatus();
  if (!device.is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("precision: bf16 cannot run on device ", device.str(), "; ", kAllowed));
  }
#ifdef QSR_HAVE_NCCL
  const int index = device.has_index() ? device.index() : 0;
  int major = 0;
  if (cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, index);
      e != cudaSuccess) {
    cudaGetLastError();  // Clears the error so later CUDA calls do not report it again.
    return absl::InvalidArgumentError(absl::StrCat("precision: bf16 on ", device.str(),
                                                   ": cannot query the GPU (",
                                                   cudaGetErrorString(e), "); ", kAllowed));
  }
  if (major < 8) {
    return absl::InvalidArgumentError(absl::StrCat("precision: bf16 needs native bfloat16, but ",
                                                   device.str(), " has compute capability ", major,
                                                   ".x; ", kAllowed));
  }
  return absl::OkStatus();
#else
  return absl::InvalidArgumentError(absl::StrCat(
      "precision: bf16 on ", device.str(),
      ": this worker was built without the CUDA toolkit, so it cannot check the "
      "GPU's bfloat16 support; use precision: fp32, or rebuild with CUDA (docs/gpu.md)"));
#endif
}

AutocastScope::AutocastScope(bool enabled, torch::DeviceType device_type)
    : enabled_(enabled), device_type_(device_type) {
  if (!enabled_) return;
  previous_enabled_ = AutocastEnabled(device_type_);
  previous_dtype_ = AutocastDtype(device_type_);
  SetAutocastDtype(device_type_, torch::kBFloat16);
  SetAutocastEnabled(device_type_, true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  // The cache holds the bfloat16 copies of the weights made in this forward; they are stale once
  // the optimizer steps.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocastEnabled(device_type_, previous_enabled_);
  SetAutocastDtype(device_type_, previous_dtype_);
}

}  // namespace qsr
