// WorkerDevices: which device each of qsr-run's workers trains on (qsr-run --device).
//
// qsr-run has no LibTorch (and no CUDA), so it counts the GPUs the workers will see the way the
// CUDA runtime does: CUDA_VISIBLE_DEVICES when it is set, otherwise the /dev/nvidiaN device
// files. A worker given a GPU it cannot open still fails with its own clear error.
//
// Pure functions; thread-safe.
#ifndef QSR_CLI_WORKER_DEVICES_H_
#define QSR_CLI_WORKER_DEVICES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qsr {

// The --device value for each of `workers` workers, from qsr-run's --device flag:
//   "cpu"                  every worker on the CPU (the default);
//   "cuda"                 worker i on cuda:i; needs at least `workers` visible GPUs;
//   "cuda:0,cuda:1,..."    one entry per worker, each a distinct visible GPU.
// INVALID_ARGUMENT naming the flag, the value and what is allowed otherwise (an unknown device,
// too few GPUs, a list of the wrong length, a GPU named twice: NCCL runs one rank per GPU).
absl::StatusOr<std::vector<std::string>> WorkerDevices(const std::string& flag, int workers,
                                                       int visible_gpus);

// GPUs visible to processes started with this environment: the entries of
// `cuda_visible_devices` up to the first invalid (negative) one when it is non-null, otherwise
// the number of `dev_dir`/nvidiaN files.
int VisibleGpus(const char* cuda_visible_devices, const std::string& dev_dir = "/dev");

}  // namespace qsr

#endif  // QSR_CLI_WORKER_DEVICES_H_
