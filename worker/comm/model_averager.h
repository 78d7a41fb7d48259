// ModelAverager: averages a model's floating-point state across ranks through one persistent flat
// float32 buffer (one collective per call instead of one per tensor).
//
// The tracked tensors are a model's parameters and floating buffers (e.g. BatchNorm running_mean
// and running_var); non-floating tensors (e.g. num_batches_tracked) and undefined tensors are
// skipped. All tracked tensors must live on one device; the flat buffer lives there too (CPU for
// Gloo, CUDA for NCCL). float64/float16/bfloat16 tensors are exchanged as float32, so after any
// call every rank holds the same float32-rounded values.
//
// Every rank must build its averager from the same architecture (same tensors in the same order),
// so that the flat layouts match; calls must match across ranks like the collectives they issue.
//
// Every dense float32 tensor on the buffer's device is re-pointed into the flat buffer at
// creation (Tensor::set_data: same TensorImpl, so optimizer state and module references stay
// valid), so that Average() and BroadcastFrom() run the collective on the model's own memory with
// no copy in or out; the others (float64, bfloat16, non-dense) are copied in and out around it.
// Why: the copies were most of an averaging round's cost on CPUs (three single-threaded passes
// over the model against one ring all-reduce); for the same reason the division happens inside
// the collective (Communicator::AllReduceAverage), not as a pass of its own.
//
// Errors are the communicator's. Because the collective works in place, after a failed Average()
// or BroadcastFrom() the tracked tensors hold unspecified values (a partial reduction): restore
// them from a snapshot (the trainer's StateSnapshot). A failed AllReduceGradients() leaves the
// grads unchanged.
//
// Thread-compatible. The tensors are referenced, not copied: the averager must not outlive the
// model, must be rebuilt if the model's tensors are replaced (e.g. by Module::to to another
// device or dtype), and its methods must not run concurrently with training steps on the same
// tensors.
#ifndef QSR_WORKER_COMM_MODEL_AVERAGER_H_
#define QSR_WORKER_COMM_MODEL_AVERAGER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/communicator.h"

namespace qsr {

class ModelAverager {
 public:
  // Tracks the floating tensors among `tensors`, in order. INVALID_ARGUMENT if they span more
  // than one device.
  static absl::StatusOr<ModelAverager> Create(const std::vector<torch::Tensor>& tensors);
  // Tracks module.parameters() then module.buffers() (recursively), skipping non-floating ones.
  static absl::StatusOr<ModelAverager> ForModule(const torch::nn::Module& module);

  ModelAverager(ModelAverager&&) = default;
  ModelAverager& operator=(ModelAverager&&) = default;

  // What Average() sends. kFloat32: the tracked tensors themselves. kBfloat16: each rank's change
  // since the reference (the state all ranks held after this averager's last successful
  // Average() or BroadcastFrom() on the same communicator), rounded to bfloat16: half the bytes,
  // for slow links. The result is the reference plus the mean change, so ranks still end
  // bit-identical; it differs from the float32 mean only by the rounding of the changes (about
  // 2^-9 of a change, not of a weight). Where there is no reference (the first call, a new
  // communicator, after a failed collective) Average() sends float32 and keeps its result as the
  // reference. Memory: kBfloat16 keeps the reference and a scratch change (two float32 copies of
  // the tracked state) and the change as sent (a bfloat16 copy), allocated once and reused, so a
  // sync allocates nothing; set_sync_precision(kFloat32) frees them.
  enum class SyncPrecision { kFloat32, kBfloat16 };
  void set_sync_precision(SyncPrecision precision);

  // Replaces every tracked tensor by its mean across ranks: one AllReduceAverage over the flat
  // buffer (and copies of the tensors that are not views of it, in and out), or over the
  // bfloat16 changes (see SyncPrecision). All ranks end bit-identical. After a failure in the
  // kBfloat16 mode that sent changes leaves the tensors unchanged.
  absl::Status Average(Communicator& comm);
  // Overlapped averaging (recipe sync_overlap): the average of this rank's state at
  // StartAverage() travels in the background (Communicator::StartAllReduceSum) while the caller
  // trains on; FinishAverage(), at any later point, waits for it and moves every tracked tensor by
  // what averaging would have changed at the start: x += mean - x_start. A rank keeps its own
  // progress since the start on top of the mean, so a round's sync costs no waiting as long as the
  // collective is shorter than the next round. With no step in between, the tensors become exactly
  // the mean, bit-identical on every rank (how a run settles before evaluating, checkpointing or
  // ending). In kBfloat16 mode with a reference, what travels is the change since the reference
  // rounded to bfloat16, and the mean becomes the next reference (all ranks agree on it); otherwise
  // it is the float32 state.
  //
  // At most one average is pending: StartAverage() while one is, or a synchronous call of this
  // averager or the communicator before FinishAverage(), is a caller error (FAILED_PRECONDITION
  // here; the communicator's contract forbids the latter). Collectives started by several
  // averagers on one communicator run in start order; finish them in any order. Errors at
  // start are the communicator's; FinishAverage() returns the collective's error and then leaves
  // the tensors unchanged (so unlike Average(), nothing needs restoring). AbandonAverage()
  // forgets a pending average without applying it: abort the communicator first, or it waits
  // for the collective (bounded by the communicator's timeout). Memory: a float32 copy of the
  // state at the start and the buffer sent (float32, or bfloat16 plus a float32 scratch),
  // allocated at the first start and reused.
  absl::Status StartAverage(Communicator& comm);
  absl::Status FinishAverage();
  void AbandonAverage();
  bool average_pending() const { return pending_ != nullptr; }

  // Replaces the .grad() of every tracked tensor that requires grad by the mean gradient across
  // ranks (data-parallel training; one all-reduce). An undefined grad counts as zeros; it is then
  // set to the mean if any rank had a gradient for that tensor, and left undefined if none had,
  // so the set of parameters with gradients ends identical on every rank.
  absl::Status AllReduceGradients(Communicator& comm);
  // Overwrites every tracked tensor with `root`'s values (initial model).
  absl::Status BroadcastFrom(Communicator& comm, int root);

  // Bytes that BroadcastFrom() and a float32 Average() exchange: 4 per tracked element.
  int64_t bytes() const { return numel_ * 4; }
  // Number of tracked tensors, and how many of them require grad.
  int64_t num_tensors() const { return static_cast<int64_t>(entries_.size()); }
  int64_t num_grad_tensors() const { return num_grad_tensors_; }
  // How many tracked tensors are views of the flat buffer (the rest are copied around it).
  int64_t num_bound_tensors() const;

 private:
  struct Entry {
    torch::Tensor tensor;
    int64_t offset;       // Into flat_, for Average and BroadcastFrom.
    int64_t grad_offset;  // Into grad_flat_, for AllReduceGradients; -1 if no grad.
    bool bound;           // The tensor's memory is flat_[offset, offset + numel).
  };

  ModelAverager(std::vector<Entry> entries, torch::Tensor flat, int64_t numel,
                int64_t num_grad_tensors, int64_t grad_numel);

  // The tensor-shaped window of `buffer` at `offset`, contiguous.
  static torch::Tensor Slot(const torch::Tensor& buffer, int64_t offset, const torch::Tensor& like);
  void CopyUnboundIn();
  void CopyUnboundOut();
  // After a successful float32 Average() or BroadcastFrom() on `comm`: in kBfloat16 mode, the
  // flat buffer becomes the reference for that communicator.
  void KeepReference(const Communicator& comm);
  // After a collective on flat_ itself: on success copies the result out and keeps it as the
  // reference; on failure forgets the reference (the next sync starts in full precision).
  absl::Status FinishInPlace(const absl::Status& status, const Communicator& comm);
  absl::Status PendingError(const char* call) const;
  // change_bf16_ = the flat buffer minus reference_, formed in float32 and rounded once.
  void FormBf16Change();

  std::vector<Entry> entries_;
  torch::Tensor flat_;  // float32, 1-D, numel_ elements: the model's own memory where bound.
  int64_t numel_ = 0;
  int64_t num_grad_tensors_ = 0;
  // AllReduceGradients' scratch, allocated at its first call: grad_numel_ gradient elements, then
  // one has-grad flag per tensor that requires grad.
  torch::Tensor grad_flat_;
  int64_t grad_numel_ = 0;
  SyncPrecision sync_precision_ = SyncPrecision::kFloat32;
  // kBfloat16 only: the flat buffer as all ranks of communicator `reference_comm_` last held it
  // (undefined = none).
  torch::Tensor reference_;
  uint64_t reference_comm_ = 0;
  // kBfloat16 only: the change since the reference, in float32 and as sent (bfloat16); allocated
  // at the first bf16 sync and reused by every later one.
  torch::Tensor change_;
  torch::Tensor change_bf16_;
  // Overlapped averaging: the state at StartAverage(), the buffer in flight (float32 state, or
  // change_bf16_), and its collective; `pending_sent_changes_` when what travels is a change
  // from reference_.
  torch::Tensor start_state_;
  torch::Tensor sent_;
  std::unique_ptr<PendingCollective> pending_;
  bool pending_sent_changes_ = false;
  int pending_world_ = 1;
  uint64_t pending_comm_ = 0;
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_MODEL_AVERAGER_H_
