// CheckpointWriter: writes a committed checkpoint from every worker of a run (see
// checkpoint/checkpoint_manifest.h for the layout).
//
// Protocol, run by every rank at the same point (after a round's averaging, so the model is the
// same on every rank):
//   1. rank 0 writes the model (LibTorch's archive, plus model.pt and for a TorchScript model
//      model.ts: see model_export.h); each rank writes its optimizer state when states differ between
//      ranks (per_rank), else rank 0 writes its own; every file atomically (temporary + rename);
//   2. all ranks agree that every part is written: an all-reduce of failure flags over the
//      communicator (a rank that failed makes every rank return the error);
//   3. rank 0 checksums the files and writes MANIFEST.json atomically: the commit.
// Until step 3 the folder has no manifest and is not a checkpoint, whatever else is in it.
//
// Not thread-safe: called from the training thread, collectively.
#ifndef QSR_WORKER_CHECKPOINT_WRITER_H_
#define QSR_WORKER_CHECKPOINT_WRITER_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/statusor.h"
#include "checkpoint/checkpoint_manifest.h"
#include "worker/comm/communicator.h"

namespace qsr {

struct CheckpointPoint {
  std::string dir;  // the checkpoint directory; the checkpoint goes to <dir>/step=S
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t round = 0;
  int64_t h = 0;
  std::string recipe_yaml;
  bool save_optimizer = true;
  bool per_rank = false;  // each rank's optimizer state (local methods)
};

struct WrittenCheckpoint {
  std::string manifest_path;  // set on rank 0 only
  int64_t bytes = 0;          // rank 0: the checkpoint's total size
};

// Collective: every rank of `comm` must call it with the same point. Errors name the file.
absl::StatusOr<WrittenCheckpoint> WriteCheckpoint(const torch::nn::Module& model,
                                                  const torch::optim::Optimizer& optimizer,
                                                  Communicator& comm, const torch::Device& device,
                                                  const CheckpointPoint& point);

}  // namespace qsr

#endif  // QSR_WORKER_CHECKPOINT_WRITER_H_
