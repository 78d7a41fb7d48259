// ModelSnapshotter: the model's weights over a run, for a time-to-accuracy curve evaluated after
// the run instead of during it.
//
// Contract: after each sync boundary (a round whose end leaves every worker with the averaged
// model, or any step of data-parallel training) the trainer calls AfterSync; the snapshotter
// writes the model when at least `every_epochs` of training (in steps) has passed since the last
// snapshot, so snapshots come every `every_epochs` or at every sync, whichever is rarer. Begin
// writes the starting model and starts the clock; Final writes the last model unless it was just
// written. Each snapshot is DIR/snap-STEP.pt (a PyTorch state dict, SavePyTorchStateDict's
// format: `model.load_state_dict(torch.load(path))`) and one line of DIR/snapshots.jsonl:
//   {"step", "epoch", "clock_s", "wall_s", "write_s", "file"}
// wall_s is the time since Begin; clock_s is the same less the time spent writing snapshots and
// inside Paused scopes (the trainer pauses it for in-run evaluations), so it measures training
// alone; write_s is this snapshot's own write time; file is relative to DIR.
//
// With sync_overlap a round's end holds rank 0's model with the previous sync applied part-way
// through the round, not an exact average; the snapshot is that model.
//
// Only one process of a run writes (the trainer makes one in rank 0): the snapshot's write time
// still delays that rank's next collective, which the other ranks spend waiting, but not the
// clock the curve is plotted against.
//
// Lifecycle: Create (checks the options, creates DIR, empties snapshots.jsonl), Begin once,
// AfterSync per sync boundary, Final at the end. Not thread-safe: one training thread.
#ifndef QSR_WORKER_MODEL_SNAPSHOTTER_H_
#define QSR_WORKER_MODEL_SNAPSHOTTER_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsr {

struct SnapshotOptions {
  std::string dir;          // where snapshots go; created if missing
  double every_epochs = 0;  // the least training between two snapshots, in epochs; > 0
  int64_t steps_per_epoch = 0;
  // The time source (tests pass a fake one).
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

class ModelSnapshotter {
 public:
  static absl::StatusOr<std::unique_ptr<ModelSnapshotter>> Create(SnapshotOptions options);

  // Starts the clock and writes the model at `step` (the run's first step, or where it resumed).
  // Later calls (a re-formed group starts training again) do nothing.
  absl::Status Begin(int64_t step, const torch::nn::Module& model);
  // At a sync boundary after `step` steps: writes the model if the interval has passed.
  absl::Status AfterSync(int64_t step, const torch::nn::Module& model);
  // At the end of training: writes the model unless `step` was the last snapshot.
  absl::Status Final(int64_t step, const torch::nn::Module& model);

  // The clock, less pauses, since Begin.
  absl::Duration Clock() const;
  int64_t snapshots() const { return snapshots_; }

  // While one lives, the clock stands still (nestable; a null snapshotter is allowed).
  class Paused {
   public:
    explicit Paused(ModelSnapshotter* snapshotter);
    ~Paused();
    Paused(const Paused&) = delete;
    Paused& operator=(const Paused&) = delete;

   private:
    ModelSnapshotter* snapshotter_;
  };

 private:
  explicit ModelSnapshotter(SnapshotOptions options) : options_(std::move(options)) {}
  absl::Status Write(int64_t step, const torch::nn::Module& model);
  void Pause();
  void Resume();

  SnapshotOptions options_;
  double interval_steps_ = 0;
  bool begun_ = false;
  absl::Time begin_;
  absl::Duration paused_total_;
  int pause_depth_ = 0;
  absl::Time pause_start_;
  int64_t last_step_ = -1;
  int64_t snapshots_ = 0;
};

}  // namespace qsr

#endif  // QSR_WORKER_MODEL_SNAPSHOTTER_H_
