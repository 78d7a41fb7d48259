#include "worker/comm/model_averager.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

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
    if (!device.has_value()) {
      device = t.device();
    } else if (t.device() != *device) {
      return absl::InvalidArgumentError(absl::StrCat("model averager: tensor ", i, " is on ",
                                                     t.device().str(), ", the first one on ",
                                                     device->str()));
    }
    Entry entry{t, numel, -1};
    numel += t.numel();
    if (t.requires_grad()) {
      entry.grad_offset = grad_numel;
      grad_numel += t.numel();
      ++num_grad;
    }
    entries.push_back(std::move(entry));
  }
  const int64_t flat_numel = std::max(numel, grad_numel + num_grad);
  torch::Tensor flat =
      torch::zeros({flat_numel}, torch::TensorOptions()
                                     .dtype(torch::kFloat32)
                                     .device(device.value_or(torch::Device(torch::kCPU))));
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

torch::Tensor ModelAverager::Slot(int64_t offset, const torch::Tensor& like) const {
  return flat_.narrow(0, offset, like.numel()).view(like.sizes());
}

absl::Status ModelAverager::Average(Communicator& comm) {
  if (numel_ == 0) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  for (const Entry& e : entries_) Slot(e.offset, e.tensor).copy_(e.tensor);
  torch::Tensor values = flat_.narrow(0, 0, numel_);
  absl::Status status = comm.AllReduceSum(values);
  if (!status.ok()) return status;
  if (comm.size() > 1) values.div_(static_cast<double>(comm.size()));
  for (Entry& e : entries_) e.tensor.copy_(Slot(e.offset, e.tensor));
  return absl::OkStatus();
}

absl::Status ModelAverager::AllReduceGradients(Communicator& comm) {
  if (num_grad_tensors_ == 0) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  std::vector<float> has_grad;
  has_grad.reserve(num_grad_tensors_);
  for (const Entry& e : entries_) {
    if (e.grad_offset < 0) continue;
    torch::Tensor slot = Slot(e.grad_offset, e.tensor);
    const torch::Tensor& grad = e.tensor.grad();
    if (grad.defined()) {
      slot.copy_(grad);
    } else {
      slot.zero_();
    }
    has_grad.push_back(grad.defined() ? 1.0f : 0.0f);
  }
  flat_.narrow(0, grad_numel_, num_grad_tensors_)
      .copy_(torch::from_blob(has_grad.data(), {num_grad_tensors_}, torch::kFloat32));
  torch::Tensor grads = flat_.narrow(0, 0, grad_numel_ + num_grad_tensors_);
  absl::Status status = comm.AllReduceSum(grads);
  if (!status.ok()) return status;
  if (comm.size() > 1) grads.div_(static_cast<double>(comm.size()));
  // .cpu() is a view, not a copy, when the flat buffer is already on the CPU.
  const torch::Tensor flags_cpu = flat_.narrow(0, grad_numel_, num_grad_tensors_).cpu();
  const float* flags = flags_cpu.data_ptr<float>();
  int64_t index = 0;
  for (Entry& e : entries_) {
    if (e.grad_offset < 0) continue;
    const bool any_rank_had_grad = flags[index++] > 0.0f;
    torch::Tensor slot = Slot(e.grad_offset, e.tensor);
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
  if (numel_ == 0) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  if (comm.rank() == root) {
    for (const Entry& e : entries_) Slot(e.offset, e.tensor).copy_(e.tensor);
  }
  torch::Tensor values = flat_.narrow(0, 0, numel_);
  absl::Status status = comm.Broadcast(values, root);
  if (!status.ok()) return status;
  // Copy back on the root too, so that non-float32 tensors are rounded the same on every rank.
  for (Entry& e : entries_) e.tensor.copy_(Slot(e.offset, e.tensor));
  return absl::OkStatus();
}

}  // namespace qsr
