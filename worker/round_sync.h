// RoundSync: how the members of a group keep their models together, round by round: the model's
// averager, AdamW's averaged moments (avg_m / avg_v), data-parallel gradients (in buckets that
// overlap with backward, or one all-reduce after it) and sync_overlap's averages in flight.
//
// Per generation and round, from the training thread:
//   BeginGeneration(comm)                 // rank 0's model for everyone; buckets on this comm
//   for each round:
//     for each step t:  BeginStep(plan, t); ...forward...; ArmGradients(plan) before the last
//                       backward; ...backward...; SyncGradients(plan); ...optimizer step...
//     EndRound(plan)                      // the round's average (started, finished or both)
//   Finish()                              // at the end of the run: complete an average in flight
//   EndGeneration() or, after the communicator was aborted, Abandon()
// A local round (not data_parallel) averages the model (and the moments) when it ends. With
// sync_overlap > 0 that average travels while the next round trains and is applied before step
// ceil(sync_overlap * H) of it (a fixed step, so runs are reproducible whatever the link's
// timing); rounds that evaluate or checkpoint wait for their own. Data-parallel rounds average
// gradients every step; their parameters stay identical, so only BatchNorm statistics are
// averaged, and only before evaluating.
//
// Every member must make the same calls with the same plans (the calls issue collectives).
// Errors are the communicator's; after one, abort the communicator, call Abandon() and restore the
// model from a snapshot (ModelAverager's contract).
//
// Thread-compatible: one training thread. References the model, the optimizer and the current
// communicator: they must outlive it (the communicator until EndGeneration or Abandon), and it must
// be created after the model's tensors have their final device and memory format.
#ifndef QSR_WORKER_ROUND_SYNC_H_
#define QSR_WORKER_ROUND_SYNC_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "qsr/v1/coordinator.pb.h"
#include "worker/comm/communicator.h"
#include "worker/comm/gradient_bucketer.h"
#include "worker/comm/model_averager.h"

namespace qsr {

struct RoundSyncOptions {
  bool bf16_sync = false;    // sync_precision: bf16 (else fp32)
  double sync_overlap = 0;   // in [0, 1]; 0 = every local round waits for its average
  bool avg_m = false;        // average AdamW's first moments with the model
  bool avg_v = false;        // ... and its second moments
  int64_t bucket_bytes = 0;  // data-parallel gradients in buckets of this size; 0 = after backward
};

// What a round's sync did, for its report.
struct RoundSyncResult {
  bool synced = false;     // every member holds the same model now
  int64_t bytes_sent = 0;  // counted in the round whose sync finished (the same on every member)
};

class RoundSync {
 public:
  static absl::StatusOr<std::unique_ptr<RoundSync>> Create(const torch::nn::Module& model,
                                                           torch::optim::Optimizer& optimizer,
                                                           const RoundSyncOptions& options);

  // Starts a generation on `comm`: everyone takes rank 0's model (rank 0 holds the most recent
  // state), and with `broadcast_moments` its AdamW moments too (see the trainer: a generation
  // that starts where the run resumed). Builds the gradient buckets on `comm` when
  // `bucket_gradients`.
  absl::Status BeginGeneration(Communicator* comm, bool broadcast_moments, bool bucket_gradients);
  // Works on `comm` from now on, without the broadcast: for members that start identical
  // already (a qsr library program may say so). No gradient buckets.
  void Attach(Communicator* comm);
  // Before step `step` of `plan`: applies the previous round's average where it is due.
  absl::Status BeginStep(const v1::RoundPlan& plan, int64_t step);
  // Before the step's last backward: its gradients start travelling as backward produces them.
  void ArmGradients(const v1::RoundPlan& plan);
  // After the step's backward: data-parallel rounds take the mean gradient.
  absl::Status SyncGradients(const v1::RoundPlan& plan);
  // After the round's last step: its average (see above).
  absl::StatusOr<RoundSyncResult> EndRound(const v1::RoundPlan& plan);
  // Averages the model now (BatchNorm statistics re-estimated on each member's shard).
  absl::Status AverageModel();
  // Completes an average in flight (a no-op when none is).
  absl::Status Finish();
  // Before the generation's communicator goes: counts its bytes and drops the buckets (which use
  // it). Idempotent; BeginGeneration starts the next one.
  void EndGeneration();
  // After the communicator was aborted: forgets the average in flight, then EndGeneration().
  void Abandon();

  // Bytes sent by this and every earlier generation's communicator.
  int64_t bytes_sent() const;

 private:
  RoundSync(const torch::nn::Module& model, torch::optim::Optimizer& optimizer,
            ModelAverager averager, const RoundSyncOptions& options);
  // AdamW's moments' averager, created at the first sync after AdamW made its state; null when
  // they are not averaged (or not there yet).
  absl::StatusOr<ModelAverager*> Moments();
  absl::Status StartOverlapped();

  const torch::nn::Module& model_;
  torch::optim::Optimizer& optimizer_;
  const RoundSyncOptions options_;
  ModelAverager averager_;
  std::unique_ptr<ModelAverager> moments_;
  // Destroyed before the communicator it uses (BeginGeneration, Abandon).
  std::unique_ptr<GradientBucketer> bucketer_;
  Communicator* comm_ = nullptr;
  int64_t bytes_before_comm_ = 0;  // sent by earlier generations' communicators
  int64_t round_start_bytes_ = 0;  // comm_'s bytes when the round began
  // sync_overlap: comm_'s bytes when the last round's report counted them.
  int64_t overlap_bytes_mark_ = 0;
};

}  // namespace qsr

#endif  // QSR_WORKER_ROUND_SYNC_H_
