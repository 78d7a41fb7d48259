// Picks the collective backend for a device: Gloo for the CPU, NCCL for CUDA devices (in builds
// that found CUDA and NCCL). The one place that knows which backends this build has.
#ifndef QSR_WORKER_COMM_COMMUNICATOR_FACTORY_H_
#define QSR_WORKER_COMM_COMMUNICATOR_FACTORY_H_

#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/store.h"
#include "worker/comm/communicator.h"

namespace qsr {

struct CommunicatorOptions {
  std::string hostname = "127.0.0.1";  // Gloo: the address peers connect to
  absl::Duration timeout = absl::Seconds(60);
};

// `store` is already scoped to this generation and communicator sequence number.
absl::StatusOr<std::unique_ptr<Communicator>> CreateCommunicator(
    const torch::Device& device, Store* store, int rank, int size,
    const CommunicatorOptions& options);

// OK when `device` ("cpu", "cuda", "cuda:N") names a device this build and machine can train on;
// otherwise an error naming it and what is allowed.
absl::Status CheckDevice(const std::string& device);

// Whether this build has the NCCL communicator.
bool HaveNccl();

}  // namespace qsr

#endif  // QSR_WORKER_COMM_COMMUNICATOR_FACTORY_H_
