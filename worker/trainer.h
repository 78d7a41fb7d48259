// Trainer: one worker's whole life in a run.
//
// Protocol, as the worker runs it:
//   1. Join the coordinator: learn rank, world size, generation and the resolved recipe.
//   2. Build the model from init_model_by_seed, the optimizer, the data shard and a Gloo
//      communicator bootstrapped through the coordinator's rendezvous under the key prefix
//      <run>/g<generation>/c0 (one communicator per generation); broadcast rank 0's weights so
//      every worker starts identical.
//   3. Loop: ask for the next rounds (the only blocking coordinator call, one per batch of
//      rounds); train each round's H steps with the schedule's LR at every step (data-parallel
//      optimizers all-reduce gradients every step); average parameters and BatchNorm buffers
//      with one flat all-reduce; evaluate when the plan says so; queue the round's report.
//      With sync_overlap that all-reduce runs while the next round trains and is applied after
//      ceil(sync_overlap * H) of its steps (ModelAverager::StartAverage); rounds that evaluate
//      or checkpoint wait for their own.
//   4. When the coordinator says the run is finished: flush reports and leave.
// Recovery: a heartbeat thread keeps the coordinator informed. When the coordinator ends the
// generation (a peer failed, or new workers are admitted) or a collective fails, the worker
// aborts its communicator, delivers its pending reports, returns to the state it saved after its
// last averaging round (StateSnapshot), joins again saying which round that state is ready for,
// and continues in the new generation from rank 0's broadcast weights. Any other error leaves
// the run with the error, so the coordinator re-forms the group without this worker.
//
// Not thread-safe: Run() once, from one thread.
#ifndef QSR_WORKER_TRAINER_H_
#define QSR_WORKER_TRAINER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/coordinator_client.h"

namespace qsr {

struct TrainerOptions {
  std::string worker_id;           // unique per process
  std::string host = "127.0.0.1";  // address peers reach this worker's Gloo transport on
  std::string device = "cpu";
  std::string data_dir;    // overrides the recipe's data_dir when set
  std::string model_path;  // overrides the recipe's model_path when set
  int threads = 0;         // intra-op threads; 0 = all cores
  // Where checkpoints go (save_freq); empty = runs/<run id>/checkpoints.
  std::string checkpoint_dir;
  // How long to keep retrying the first Join while the coordinator is not up yet (or the other
  // workers have not arrived).
  absl::Duration connect_timeout = absl::Seconds(60);
  // After a failure: how long to keep asking to join the next generation.
  absl::Duration regroup_timeout = absl::Minutes(10);
  // Rank 0 writes the averaged model here every snapshot_every epochs or at every sync,
  // whichever is rarer (ModelSnapshotter); empty = no snapshots.
  std::string snapshot_dir;
  double snapshot_every = 0.0625;
};

struct TrainerResult {
  int rank = -1;
  int64_t rounds = 0;
  int64_t steps = 0;
  double test_acc = -1;
  int64_t bytes_sent = 0;
  // FNV-1a hash of the final parameters' bytes, to check that every worker ends identical.
  uint64_t params_hash = 0;
  // Times this worker returned to its last averaged state and joined a new generation.
  int64_t regroups = 0;
};

// Runs the worker to the end of the run. `client` must outlive the call.
absl::StatusOr<TrainerResult> RunTrainer(CoordinatorClient* client, const TrainerOptions& options);

}  // namespace qsr

#endif  // QSR_WORKER_TRAINER_H_
