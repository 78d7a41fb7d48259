#include "worker/comm/communicator_factory.h"

#include "absl/strings/str_cat.h"
#include "worker/comm/gloo_communicator.h"
#ifdef QSR_HAVE_NCCL
#include "worker/comm/nccl_communicator.h"
#endif

namespace qsr {

bool HaveNccl() {
#ifdef QSR_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(
    const torch::Device& device, Store* store, int rank, int size,
    const CommunicatorOptions& options) {
  if (device.is_cpu()) {
    GlooOptions gloo;
    gloo.hostname = options.hostname;
    gloo.timeout = options.timeout;
    absl::StatusOr<std::unique_ptr<GlooCommunicator>> c =
        GlooCommunicator::Create(store, rank, size, gloo);
    if (!c.ok()) return c.status();
    return std::unique_ptr<Communicator>(std::move(*c));
  }
#ifdef QSR_HAVE_NCCL
  if (device.is_cuda()) {
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> c = NcclCommunicator::Create(
        store, rank, size, device.has_index() ? device.index() : 0, options.timeout);
    if (!c.ok()) return c.status();
    return std::unique_ptr<Communicator>(std::move(*c));
  }
#endif
  return absl::UnimplementedError(absl::StrCat(
      "no communicator for device ", device.str(), " in this build (",
      HaveNccl() ? "gloo, nccl" : "gloo only: CUDA/NCCL were not found at build time", ")"));
}

absl::Status CheckDevice(const std::string& device) {
  torch::Device d = torch::kCPU;
  try {
    d = torch::Device(device);
  } catch (const std::exception&) {
    return absl::InvalidArgumentError("--device " + device +
                                      " is not a device; allowed: cpu, cuda:N");
  }
  if (d.is_cpu()) return absl::OkStatus();
  if (!d.is_cuda()) {
    return absl::InvalidArgumentError("--device " + device + ": allowed: cpu, cuda:N");
  }
  if (!torch::cuda::is_available()) {
    return absl::FailedPreconditionError(
        "--device " + device +
        ": this LibTorch has no CUDA or the machine has no GPU; use --device cpu");
  }
  if (d.has_index() && d.index() >= static_cast<int>(torch::cuda::device_count())) {
    return absl::InvalidArgumentError(absl::StrCat("--device ", device, ": this machine has ",
                                                   torch::cuda::device_count(), " GPUs"));
  }
  if (!HaveNccl()) {
    return absl::FailedPreconditionError("--device " + device +
                                         ": this build has no NCCL communicator");
  }
  return absl::OkStatus();
}

}  // namespace qsr
