#include "worker/round_sync.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "worker/adam_moments.h"
#include "worker/comm/collective_fault_hook.h"

namespace qsr {
namespace {

ModelAverager::SyncPrecision PrecisionOf(const RoundSyncOptions& options) {
  return options.bf16_sync ? ModelAverager::SyncPrecision::kBfloat16
                           : ModelAverager::SyncPrecision::kFloat32;
}

// sync_overlap: the step before which the previous round's average is applied. Applying it as
// soon as it arrived would depend on the link's timing; a fixed step keeps runs reproducible.
int64_t ApplyAt(const v1::RoundPlan& plan, double sync_overlap) {
  return plan.start_step() +
         std::clamp<int64_t>(static_cast<int64_t>(std::ceil(sync_overlap * plan.h())), 1, plan.h());
}

}  // namespace

absl::StatusOr<std::unique_ptr<RoundSync>> RoundSync::Create(const torch::nn::Module& model,
                                                             torch::optim::Optimizer& optimizer,
                                                             const RoundSyncOptions& options) {
  absl::StatusOr<ModelAverager> averager = ModelAverager::ForModule(model);
  if (!averager.ok()) return averager.status();
  averager->set_sync_precision(PrecisionOf(options));
  return std::unique_ptr<RoundSync>(new RoundSync(model, optimizer, std::move(*averager), options));
}

RoundSync::RoundSync(const torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                     ModelAverager averager, const RoundSyncOptions& options)
    : model_(model), optimizer_(optimizer), options_(options), averager_(std::move(averager)) {}

absl::Status RoundSync::BeginGeneration(Communicator* comm, bool broadcast_moments,
                                        bool bucket_gradients) {
  Attach(comm);
  if (absl::Status s = averager_.BroadcastFrom(*comm_, 0); !s.ok()) return s;
  if (broadcast_moments) {
    absl::StatusOr<ModelAverager*> moments = Moments();
    if (!moments.ok()) return moments.status();
    if (*moments != nullptr) {
      if (absl::Status s = (*moments)->BroadcastFrom(*comm_, 0); !s.ok()) return s;
    }
  }
  if (bucket_gradients && options_.bucket_bytes > 0) {
    BucketerOptions bucket_options;
    bucket_options.bucket_bytes = options_.bucket_bytes;
    absl::StatusOr<std::unique_ptr<GradientBucketer>> bucketer =
        GradientBucketer::Create(model_.parameters(), comm_, bucket_options);
    if (!bucketer.ok()) return bucketer.status();
    bucketer_ = std::move(*bucketer);
  }
  overlap_bytes_mark_ = comm_->bytes_sent();  // the broadcasts are no round's bytes
  return absl::OkStatus();
}

void RoundSync::Attach(Communicator* comm) {
  EndGeneration();
  comm_ = comm;
  overlap_bytes_mark_ = comm_->bytes_sent();
}

absl::Status RoundSync::BeginStep(const v1::RoundPlan& plan, int64_t step) {
  if (step == plan.start_step()) {
    round_start_bytes_ = comm_->bytes_sent();
    // Data-parallel gradients use the communicator synchronously (an average is never in flight
    // then in practice: data-parallel rounds come before local ones).
    if (plan.data_parallel()) return Finish();
  }
  if (options_.sync_overlap > 0 && step == ApplyAt(plan, options_.sync_overlap)) return Finish();
  return absl::OkStatus();
}

void RoundSync::ArmGradients(const v1::RoundPlan& plan) {
  if (plan.data_parallel() && bucketer_) bucketer_->Arm();
}

absl::Status RoundSync::SyncGradients(const v1::RoundPlan& plan) {
  if (!plan.data_parallel()) return absl::OkStatus();
  return bucketer_ ? bucketer_->Finish() : averager_.AllReduceGradients(*comm_);
}

absl::StatusOr<RoundSyncResult> RoundSync::EndRound(const v1::RoundPlan& plan) {
  RoundSyncResult result;
  if (!plan.data_parallel() && options_.sync_overlap > 0) {
    // The previous round's average travelled while this round trained (applied in BeginStep, or
    // now when sync_overlap is 1): send this round's and train on. Evaluation and checkpoints
    // need the averaged model, so those rounds wait for their own. An average's bytes are
    // counted once it finished, and so in the round that finished it: the same round on every
    // member, whenever the collective completed in the background.
    if (absl::Status s = Finish(); !s.ok()) return s;
    int64_t counted = comm_->bytes_sent();
    if (absl::Status s = StartOverlapped(); !s.ok()) return s;
    if (plan.eval_after() || plan.checkpoint_after()) {
      if (absl::Status s = Finish(); !s.ok()) return s;
      counted = comm_->bytes_sent();
      result.synced = true;
    }
    result.bytes_sent = counted - overlap_bytes_mark_;
    overlap_bytes_mark_ = counted;
    return result;
  }
  if (!plan.data_parallel() || plan.eval_after()) {
    // Data-parallel parameters are already identical; only BatchNorm statistics drift, and they
    // matter only for evaluation, so they are averaged before evaluating (and at the end).
    if (plan.round() == CollectiveFaultHook::KillRound()) CollectiveFaultHook::Arm();
    if (absl::Status s = averager_.Average(*comm_); !s.ok()) return s;
    if (!plan.data_parallel()) {
      absl::StatusOr<ModelAverager*> moments = Moments();
      if (!moments.ok()) return moments.status();
      if (*moments != nullptr) {
        if (absl::Status s = (*moments)->Average(*comm_); !s.ok()) return s;
      }
    }
    result.synced = true;
  }
  result.bytes_sent = comm_->bytes_sent() - round_start_bytes_;
  return result;
}

absl::Status RoundSync::AverageModel() { return averager_.Average(*comm_); }

absl::Status RoundSync::Finish() {
  absl::Status status = averager_.FinishAverage();
  if (moments_ != nullptr) status.Update(moments_->FinishAverage());
  return status;
}

void RoundSync::EndGeneration() {
  bucketer_.reset();  // removes its hooks; on an aborted communicator its collectives fail fast
  if (comm_ != nullptr) bytes_before_comm_ += comm_->bytes_sent();
  comm_ = nullptr;
}

void RoundSync::Abandon() {
  averager_.AbandonAverage();
  if (moments_ != nullptr) moments_->AbandonAverage();
  EndGeneration();
}

int64_t RoundSync::bytes_sent() const {
  return bytes_before_comm_ + (comm_ != nullptr ? comm_->bytes_sent() : 0);
}

absl::StatusOr<ModelAverager*> RoundSync::Moments() {
  if (!options_.avg_m && !options_.avg_v) return nullptr;
  if (moments_ == nullptr) {
    // AdamW creates its state at the first step; from then on the tensors are updated in place.
    std::vector<torch::Tensor> moments =
        AdamMoments(optimizer_, model_.parameters(), options_.avg_m, options_.avg_v);
    if (moments.empty()) return nullptr;
    absl::StatusOr<ModelAverager> averager = ModelAverager::Create(moments);
    if (!averager.ok()) return averager.status();
    moments_ = std::make_unique<ModelAverager>(std::move(*averager));
    moments_->set_sync_precision(PrecisionOf(options_));
  }
  return moments_.get();
}

absl::Status RoundSync::StartOverlapped() {
  if (absl::Status s = averager_.StartAverage(*comm_); !s.ok()) return s;
  absl::StatusOr<ModelAverager*> moments = Moments();
  if (!moments.ok()) return moments.status();
  return *moments == nullptr ? absl::OkStatus() : (*moments)->StartAverage(*comm_);
}

}  // namespace qsr
