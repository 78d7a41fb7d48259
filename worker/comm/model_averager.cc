#include "worker/comm/model_averager.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/comm/same_device.h"

namespace qsr {

absl::StatusOr<ModelAverager> ModelAverager::Create(const std::vector<torch::Tensor>& tensors) {
  std::vector<Entry> entries;
  int64_t numel = 0;
  int64_t grad_numel = 0;
  int64_t num_grad = 0;
  c10::optional<torch::Device> device;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    if (!t.defined() || !t.is_floating_point()) continue;
    if (absl::Status s = CheckSameDevice(t, i, "model averager: tensor", &device); !s.ok()) {
      return s;
    }
    Entry entry{t, numel, -1, false};
    numel += t.numel();
    if (t.requires_grad()) {
      entry.grad_offset = grad_numel;
      grad_numel += t.numel();
      ++num_grad;
    }
    entries.push_back(std::move(entry));
  }
  torch::Tensor flat =
      torch::empty({numel}, torch::TensorOptions()
                                .dtype(torch::kFloat32)
                                .device(device.value_or(torch::Device(torch::kCPU))));
  torch::NoGradGuard no_grad;
  for (Entry& e : entries) {
    const torch::Tensor& t = e.tensor;
    // A dense float32 tensor fills exactly numel() consecutive floats in some order of its
    // dimensions (contiguous, channels-last, ...), so its window keeps its strides.
    e.bound = t.scalar_type() == torch::kFloat32 &&
              t.unsafeGetTensorImpl()->is_non_overlapping_and_dense();
    if (!e.bound) continue;
    torch::Tensor window = flat.as_strided(t.sizes(), t.strides(), e.offset);
    window.copy_(t);
    t.set_data(window);
  }
  return ModelAverager(std::move(entries), std::move(flat), numel, num_grad, grad_numel);
}

absl::StatusOr<ModelAverager> ModelAverager::ForModule(const torch::nn::Module& module) {
  std::vector<torch::Tensor> tensors = module.parameters(/*recurse=*/true);
  for (const torch::Tensor& b : module.buffers(/*recurse=*/true)) tensors.push_back(b);
  return Create(tensors);
}

ModelAverager::ModelAverager(std::vector<Entry> entries, torch::Tensor flat, int64_t numel,
                             int64_t num_grad_tensors, int64_t grad_numel)
    : entries_(std::move(entries)),
      flat_(std::move(flat)),
      numel_(numel),
      num_grad_tensors_(num_grad_tensors),
      grad_numel_(grad_numel) {}

int64_t ModelAverager::num_bound_tensors() const {
  return std::count_if(entries_.begin(), entries_.end(), [](const Entry& e) { return e.bound; });
}

torch::Tensor ModelAverager::Slot(const torch::Tensor& buffer, int64_t offset,
                                  const torch::Tensor& like) {
  return buffer.narrow(0, offset, like.numel()).view(like.sizes());
}

void ModelAverager::CopyUnboundIn() {
  for (const Entry& e : entries_) {
    if (!e.bound) Slot(flat_, e.offset, e.tensor).copy_(e.tensor);
  }
}

void ModelAverager::CopyUnboundOut() {
  for (Entry& e : entries_) {
    if (!e.bound) e.tensor.copy_(Slot(flat_, e.offset, e.tensor));
  }
}

void ModelAverager::set_sync_precision(SyncPrecision precision) {
  sync_precision_ = precision;
  if (precision == SyncPrecision::kFloat32) {
    reference_ = torch::Tensor();
    change_ = torch::Tensor();
    change_bf16_ = torch::Tensor();
  }
}

void ModelAverager::KeepReference(const Communicator& comm) {
  if (sync_precision_ != SyncPrecision::kBfloat16) return;
  if (reference_.defined()) {
    reference_.copy_(flat_);
  } else {
    reference_ = flat_.clone();
  }
  reference_comm_ = comm.instance_id();
}

void ModelAverager::FormBf16Change() {
  // Kept between rounds: a sync allocates nothing.
  if (!change_.defined()) {
    change_ = torch::empty_like(flat_);
    change_bf16_ = torch::empty_like(flat_, flat_.options().dtype(torch::kBFloat16));
  }
  torch::sub_out(change_, flat_, reference_);
  change_bf16_.copy_(change_);
}

absl::Status ModelAverager::PendingError(const char* call) const {
  return absl::FailedPreconditionError(
      absl::StrCat("model averager: ", call,
                   " while an overlapped average is pending (FinishAverage() or "
                   "AbandonAverage() it first)"));
}

absl::Status ModelAverager::Average(Communicator& comm) {
  if (pending_ != nullptr) return PendingError("Average()");
  if (numel_ == 0) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  CopyUnboundIn();
  if (sync_precision_ == SyncPrecision::kBfloat16 && comm.size() > 1 && reference_.defined() &&
      reference_comm_ == comm.instance_id()) {
    // The change is formed in float32 and rounded once; the model's memory is not touched until
    // the collective succeeded.
    FormBf16Change();
    absl::Status status = comm.AllReduceAverage(change_bf16_);
    if (!status.ok()) {
      reference_ = torch::Tensor();
      return status;
    }
    // Widened into the float32 scratch first: adding the bfloat16 tensor directly would make
    // the CPU kernel allocate a float32 copy of it.
    change_.copy_(change_bf16_);
    reference_.add_(change_);
    flat_.copy_(reference_);
    CopyUnboundOut();
    return absl::OkStatus();
  }
  return FinishInPlace(comm.AllReduceAverage(flat_), comm);
}

absl::Status ModelAverager::StartAverage(Communicator& comm) {
  if (pending_ != nullptr) return PendingError("StartAverage()");
  if (numel_ == 0) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  CopyUnboundIn();
  if (!start_state_.defined()) start_state_ = torch::empty_like(flat_);
  start_state_.copy_(flat_);
  const bool changes = sync_precision_ == SyncPrecision::kBfloat16 && comm.size() > 1 &&
                       reference_.defined() && reference_comm_ == comm.instance_id();
  if (changes) {
    FormBf16Change();
  } else {
    if (!sent_.defined()) sent_ = torch::empty_like(flat_);
    sent_.copy_(flat_);
  }
  // A sum, divided when applied: the asynchronous collective of both backends is a sum.
  absl::StatusOr<std::unique_ptr<PendingCollective>> started =
      comm.StartAllReduceSum(changes ? change_bf16_ : sent_);
  if (!started.ok()) {
    reference_ = torch::Tensor();
    return started.status();
  }
  pending_ = std::move(*started);
  pending_sent_changes_ = changes;
  pending_world_ = comm.size();
  pending_comm_ = comm.instance_id();
  return absl::OkStatus();
}

absl::Status ModelAverager::FinishAverage() {
  if (pending_ == nullptr) return absl::OkStatus();
  const std::unique_ptr<PendingCollective> pending = std::move(pending_);
  if (absl::Status status = pending->Wait(); !status.ok()) {
    reference_ = torch::Tensor();
    return status;
  }
  torch::NoGradGuard no_grad;
  const double inverse = 1.0 / pending_world_;
  if (pending_sent_changes_) {
    // The mean of the states at the start: the reference plus the mean change.
    change_.copy_(change_bf16_);
    reference_.add_(change_, inverse);
  } else if (sync_precision_ == SyncPrecision::kBfloat16) {
    if (!reference_.defined()) reference_ = torch::empty_like(flat_);
    torch::mul_out(reference_, sent_, inverse);
    reference_comm_ = pending_comm_;
  }
  if (pending_world_ == 1) return absl::OkStatus();  // the mean is the start: nothing moves
  CopyUnboundIn();
  // x - x_start first: it is exactly zero where no step ran since the start, so that the
  // result is then the mean itself, bit for bit on every rank.
  flat_.sub_(start_state_);
  if (sync_precision_ == SyncPrecision::kBfloat16) {
    flat_.add_(reference_);  // the mean, kept above as the next reference
  } else {
    flat_.add_(sent_, inverse);
  }
  CopyUnboundOut();
  return absl::OkStatus();
}

void ModelAverager::AbandonAverage() {
  if (pending_ == nullptr) return;
  // Waited for, so that the buffer in flight is free for the next start; after an abort this
  // returns at once.
  pending_->Wait().IgnoreError();
  pending_.reset();
  reference_ = torch::Tensor();
}

absl::Status ModelAverager::AllReduceGradients(Communicator& comm) {
  if (num_grad_tensors_ == 0) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  if (!grad_flat_.defined()) {
    grad_flat_ = torch::zeros({grad_numel_ + num_grad_tensors_}, flat_.options());
  }
  std::vector<float> has_grad;
  has_grad.reserve(num_grad_tensors_);
  for (const Entry& e : entries_) {
    if (e.grad_offset < 0) continue;
    torch::Tensor slot = Slot(grad_flat_, e.grad_offset, e.tensor);
    const torch::Tensor& grad = e.tensor.grad();
    if (grad.defined()) {
      slot.copy_(grad);
    } else {
      slot.zero_();
    }
    has_grad.push_back(grad.defined() ? 1.0f : 0.0f);
  }
  grad_flat_.narrow(0, grad_numel_, num_grad_tensors_)
      .copy_(torch::from_blob(has_grad.data(), {num_grad_tensors_}, torch::kFloat32));
  torch::Tensor& grads = grad_flat_;
  absl::Status status = comm.AllReduceAverage(grads);
  if (!status.ok()) return status;
  // .cpu() is a view, not a copy, when the flat buffer is already on the CPU.
  const torch::Tensor flags_cpu = grad_flat_.narrow(0, grad_numel_, num_grad_tensors_).cpu();
  const float* flags = flags_cpu.data_ptr<float>();
  int64_t index = 0;
  for (Entry& e : entries_) {
    if (e.grad_offset < 0) continue;
    const bool any_rank_had_grad = flags[index++] > 0.0f;
    torch::Tensor slot = Slot(grad_flat_, e.grad_offset, e.tensor);
    torch::Tensor& grad = e.tensor.mutable_grad();
    if (grad.defined()) {
      grad.copy_(slot);
    } else if (any_rank_had_grad) {
      grad = slot.to(e.tensor.dtype(), /*non_blocking=*/false, /*copy=*/true);
    }
  }
  return absl::OkStatus();
}

absl::Status ModelAverager::BroadcastFrom(Communicator& comm, int root) {
  if (pending_ != nullptr) return PendingError("BroadcastFrom()");
  if (numel_ == 0) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  if (comm.rank() == root) CopyUnboundIn();
  // Copied back on the root too, so that non-float32 tensors are rounded the same on every rank.
  return FinishInPlace(comm.Broadcast(flat_, root), comm);
}

absl::Status ModelAverager::FinishInPlace(const absl::Status& status, const Communicator& comm) {
  if (!status.ok()) {
    reference_ = torch::Tensor();
    return status;
  }
  CopyUnboundOut();
  KeepReference(comm);
  return absl::OkStatus();
}

}  // namespace qsr
