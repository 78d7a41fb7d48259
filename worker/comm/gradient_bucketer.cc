#include "worker/comm/gradient_bucketer.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/comm/same_device.h"
#include "worker/torch_call.h"

namespace qsr {

absl::StatusOr<std::unique_ptr<GradientBucketer>> GradientBucketer::Create(
    const std::vector<torch::Tensor>& params, Communicator* comm, const BucketerOptions& options) {
  if (comm == nullptr) return absl::InvalidArgumentError("gradient bucketer: communicator is null");
  if (options.bucket_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gradient bucketer: bucket size must be positive, got ", options.bucket_bytes, " bytes"));
  }
  std::vector<int> grad_params;  // indices into `params` that require grad
  c10::optional<torch::Device> device;
  for (size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor& p = params[i];
    if (!p.defined() || !p.is_floating_point()) {
      return absl::InvalidArgumentError(
          absl::StrCat("gradient bucketer: parameter ", i, " is undefined or not floating-point"));
    }
    if (!p.requires_grad()) continue;
    if (absl::Status s = CheckSameDevice(p, i, "gradient bucketer: parameter", &device); !s.ok()) {
      return s;
    }
    grad_params.push_back(static_cast<int>(i));
  }
  // Reverse registration order: backward reaches the last layers first, so their buckets fill
  // (and start) first.
  std::vector<Param> out;
  std::vector<Bucket> buckets;
  const int64_t bucket_numel = std::max<int64_t>(1, options.bucket_bytes / 4);
  for (auto it = grad_params.rbegin(); it != grad_params.rend(); ++it) {
    const torch::Tensor& p = params[*it];
    if (buckets.empty() || buckets.back().numel >= bucket_numel ||
        (buckets.back().numel > 0 && buckets.back().numel + p.numel() > bucket_numel)) {
      buckets.emplace_back();
    }
    Bucket& b = buckets.back();
    Param param{p, static_cast<int>(buckets.size()) - 1, b.numel,
                static_cast<int>(b.params.size())};
    b.params.push_back(static_cast<int>(out.size()));
    b.numel += p.numel();
    out.push_back(std::move(param));
  }
  absl::Status s = TorchCall("gradient bucketer: allocating buckets", [&] {
    for (Bucket& b : buckets) {
      b.buffer = torch::zeros({b.numel + static_cast<int64_t>(b.params.size())},
                              torch::TensorOptions().dtype(torch::kFloat32).device(*device));
    }
  });
  if (!s.ok()) return s;
  std::unique_ptr<GradientBucketer> bucketer(
      new GradientBucketer(comm, std::move(out), std::move(buckets)));
  // Hooks go on after construction: they capture the bucketer's final address.
  for (size_t i = 0; i < bucketer->params_.size(); ++i) {
    Param& p = bucketer->params_[i];
    GradientBucketer* self = bucketer.get();
    const int index = static_cast<int>(i);
    p.hook = p.tensor.register_hook(
        [self, index](const torch::Tensor& grad) { self->OnGradient(index, grad); });
  }
  return bucketer;
}

GradientBucketer::GradientBucketer(Communicator* comm, std::vector<Param> params,
                                   std::vector<Bucket> buckets)
    : comm_(comm),
      params_(std::move(params)),
      buckets_(std::move(buckets)),
      arrived_(params_.size(), false) {
  std::lock_guard<std::mutex> lock(mu_);
  ResetLocked();
}

GradientBucketer::~GradientBucketer() {
  for (Param& p : params_) {
    try {
      p.tensor.remove_hook(p.hook);
    } catch (...) {
      // The tensor's autograd metadata is gone; so is the hook.
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Collectives still in flight (a step that failed half-way) write into our buffers.
  WaitAllLocked().IgnoreError();
}

std::vector<std::vector<int>> GradientBucketer::bucket_layout() const {
  std::vector<std::vector<int>> layout;
  std::lock_guard<std::mutex> lock(mu_);
  for (const Bucket& b : buckets_) layout.push_back(b.params);
  return layout;
}

void GradientBucketer::Arm() {
  std::lock_guard<std::mutex> lock(mu_);
  armed_ = true;
}

void GradientBucketer::RecordError(absl::Status status) {
  if (error_.ok()) error_ = std::move(status);
}

void GradientBucketer::OnGradient(int index, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_ || !error_.ok() || !grad.defined()) return;
  const Param& p = params_[index];
  Bucket& b = buckets_[p.bucket];
  if (arrived_[index] || b.started) {
    RecordError(absl::InternalError(absl::StrCat(
        "gradient bucketer: a second gradient for parameter ", index,
        " arrived in one armed backward pass (call Finish() after each armed backward)")));
    return;
  }
  absl::Status s = TorchCall("gradient bucketer: collecting a gradient", [&] {
    if (grad.is_sparse()) throw std::invalid_argument("sparse gradients are not supported");
    torch::NoGradGuard no_grad;
    torch::Tensor slot = b.buffer.narrow(0, p.offset, p.tensor.numel()).view(p.tensor.sizes());
    // The hook sees the incoming gradient before it is accumulated into .grad; the earlier
    // micro-batches' sum is already there.
    const torch::Tensor& accumulated = p.tensor.grad();
    if (accumulated.defined()) {
      torch::add_out(slot, accumulated, grad);
    } else {
      slot.copy_(grad);
    }
    b.buffer[b.numel + p.slot].fill_(1.0);
  });
  if (!s.ok()) {
    RecordError(std::move(s));
    return;
  }
  arrived_[index] = true;
  if (--b.pending == 0) StartReadyLocked();
}

void GradientBucketer::StartReadyLocked() {
  while (next_start_ < num_buckets() && buckets_[next_start_].pending == 0 && error_.ok()) {
    Bucket& b = buckets_[next_start_++];
    b.started = true;
    absl::StatusOr<std::unique_ptr<PendingCollective>> c = comm_->StartAllReduceSum(b.buffer);
    if (!c.ok()) {
      RecordError(c.status());
      return;
    }
    b.collective = std::move(*c);
  }
}

void GradientBucketer::StartRestLocked() {
  for (int bi = next_start_; bi < num_buckets() && error_.ok(); ++bi) {
    Bucket& b = buckets_[bi];
    if (b.pending == 0) continue;
    absl::Status s = TorchCall("gradient bucketer: collecting unused gradients", [&] {
      torch::NoGradGuard no_grad;
      for (int index : b.params) {
        if (arrived_[index]) continue;
        const Param& p = params_[index];
        torch::Tensor slot = b.buffer.narrow(0, p.offset, p.tensor.numel()).view(p.tensor.sizes());
        const torch::Tensor& grad = p.tensor.grad();
        if (grad.defined()) {
          slot.copy_(grad);
        } else {
          slot.zero_();
        }
        b.buffer[b.numel + p.slot].fill_(grad.defined() ? 1.0 : 0.0);
      }
    });
    if (!s.ok()) {
      RecordError(std::move(s));
      return;
    }
    b.pending = 0;
  }
  StartReadyLocked();
}

absl::Status GradientBucketer::WaitAllLocked() {
  absl::Status first;
  for (Bucket& b : buckets_) {
    if (b.collective == nullptr) continue;
    absl::Status s = b.collective->Wait();
    b.collective.reset();
    if (first.ok() && !s.ok()) first = std::move(s);
  }
  return first;
}

void GradientBucketer::ResetLocked() {
  armed_ = false;
  next_start_ = 0;
  error_ = absl::OkStatus();
  std::fill(arrived_.begin(), arrived_.end(), false);
  for (Bucket& b : buckets_) {
    b.pending = static_cast<int>(b.params.size());
    b.started = false;
  }
}

absl::Status GradientBucketer::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_) {
    ResetLocked();
    return absl::FailedPreconditionError(
        "gradient bucketer: Finish() without Arm() before the backward pass");
  }
  StartRestLocked();
  absl::Status waited = WaitAllLocked();
  absl::Status status = error_.ok() ? waited : error_;
  ResetLocked();
  if (!status.ok()) return status;
  const int size = comm_->size();
  return TorchCall("gradient bucketer: writing mean gradients", [&] {
    torch::NoGradGuard no_grad;
    // The division by the world size is folded into the copy back to each gradient (one pass
    // over the bucket, not two); the has-grad flags are only compared with zero.
    const double divisor = static_cast<double>(size);
    for (Bucket& b : buckets_) {
      const int64_t n = static_cast<int64_t>(b.params.size());
      // .cpu() is a view, not a copy, when the buffer is already on the CPU.
      const torch::Tensor flags_cpu = b.buffer.narrow(0, b.numel, n).cpu();
      const float* flags = flags_cpu.data_ptr<float>();
      for (int64_t k = 0; k < n; ++k) {
        Param& p = params_[b.params[k]];
        torch::Tensor slot = b.buffer.narrow(0, p.offset, p.tensor.numel()).view(p.tensor.sizes());
        torch::Tensor& grad = p.tensor.mutable_grad();
        if (grad.defined()) {
          torch::div_out(grad, slot, divisor);
        } else if (flags[k] > 0.0f) {
          grad = slot.div(divisor).to(p.tensor.dtype());
        }
      }
    }
  });
}

}  // namespace qsr
