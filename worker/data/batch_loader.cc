#include "worker/data/batch_loader.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

constexpr int kMaxPrefetch = 64;
// How long the producer sleeps between checks of its stop flag when it has nothing to do.
constexpr std::chrono::milliseconds kProducerPoll(100);

// True when `t` is referenced only by the pool (no tensor or view the caller holds shares it).
bool Unshared(const at::Tensor& t) { return t.use_count() == 1 && t.storage().use_count() == 1; }

}  // namespace

absl::StatusOr<std::unique_ptr<BatchLoader>> BatchLoader::Create(const Dataset& data,
                                                                 const SamplerConfig& config,
                                                                 int prefetch, int64_t start_step) {
  if (prefetch < 0 || prefetch > kMaxPrefetch) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchLoader: prefetch must be in [0, ", kMaxPrefetch, "], got ", prefetch));
  }
  if (start_step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchLoader: start_step must be >= 0, got ", start_step));
  }
  if (!data.images.defined() || !data.labels.defined()) {
    return absl::InvalidArgumentError("BatchLoader: the dataset has no images or labels");
  }
  try {
    if (!data.images.device().is_cpu() || !data.labels.device().is_cpu()) {
      return absl::InvalidArgumentError("BatchLoader: the dataset must be on the CPU");
    }
    if (data.labels.dim() != 1 || data.images.dim() < 1 ||
        data.images.size(0) != data.labels.size(0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("BatchLoader: images of shape ", c10::str(data.images.sizes()),
                       " do not match labels of shape ", c10::str(data.labels.sizes()),
                       " (want N x ... and N)"));
    }
    if (!at::isFloatingType(data.images.scalar_type()) || data.labels.scalar_type() != at::kLong) {
      return absl::InvalidArgumentError(
          "BatchLoader: images must be floating point and labels int64");
    }
    absl::StatusOr<ShardSampler> sampler = ShardSampler::Create(data.size(), config);
    if (!sampler.ok()) return sampler.status();
    Dataset contiguous{data.images.contiguous(), data.labels.contiguous(), data.num_classes};
    return std::unique_ptr<BatchLoader>(
        new BatchLoader(contiguous, *sampler, prefetch, start_step));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("BatchLoader: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("BatchLoader: ", e.what()));
  }
}

BatchLoader::BatchLoader(const Dataset& data, const ShardSampler& sampler, int prefetch,
                         int64_t start_step)
    : images_(data.images),
      labels_(data.labels),
      prefetch_(prefetch),
      local_batch_(sampler.local_batch()),
      steps_per_epoch_(sampler.steps_per_epoch()),
      row_bytes_(data.images.numel() / data.images.size(0) * data.images.element_size()),
      sampler_(sampler),
      indices_(sampler.local_batch()),
      next_consume_(start_step),
      next_produce_(start_step) {
  if (prefetch_ > 0) thread_ = std::thread([this] { Run(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  space_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t BatchLoader::next_step() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_consume_;
}

absl::Status BatchLoader::Seek(int64_t step) {
  if (step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("BatchLoader: cannot seek to step ", step));
  }
  std::deque<Batch> discarded;  // released outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++generation_;
    discarded.swap(ready_);
    next_consume_ = step;
    next_produce_ = step;
    error_ = absl::OkStatus();
  }
  space_cv_.notify_all();
  return absl::OkStatus();
}

absl::StatusOr<Batch> BatchLoader::Next(absl::Duration timeout) {
  if (prefetch_ == 0) {
    int64_t step;
    {
      std::lock_guard<std::mutex> lock(mu_);
      step = next_consume_;
    }
    absl::StatusOr<Batch> batch = Produce(step);
    if (batch.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++next_consume_;
      next_produce_ = next_consume_;
    }
    return batch;
  }
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  std::unique_lock<std::mutex> lock(mu_);
  if (!ready_cv_.wait_until(lock, deadline, [this] { return !ready_.empty() || !error_.ok(); })) {
    return absl::DeadlineExceededError(absl::StrCat("BatchLoader: batch of step ", next_consume_,
                                                    " not ready after ",
                                                    absl::FormatDuration(timeout)));
  }
  if (ready_.empty()) return error_;
  Batch batch = std::move(ready_.front());
  ready_.pop_front();
  ++next_consume_;
  lock.unlock();
  space_cv_.notify_all();
  return batch;
}

void BatchLoader::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (static_cast<int>(ready_.size()) >= prefetch_ || !error_.ok()) {
      space_cv_.wait_for(lock, kProducerPoll);
      continue;
    }
    const int64_t step = next_produce_;
    const uint64_t generation = generation_;
    lock.unlock();
    absl::StatusOr<Batch> batch = Produce(step);
    lock.lock();
    if (generation != generation_) continue;  // a Seek() overtook this batch
    if (!batch.ok()) {
      error_ = batch.status();
    } else {
      ready_.push_back(*std::move(batch));
      ++next_produce_;
    }
    ready_cv_.notify_all();
  }
}

Batch BatchLoader::AcquireBuffers() {
  for (Batch& b : pool_) {
    if (Unshared(b.x) && Unshared(b.y)) return b;
  }
  std::vector<int64_t> shape = images_.sizes().vec();
  shape[0] = local_batch_;
  Batch b;
  b.x = at::empty(shape, images_.options());
  b.y = at::empty({local_batch_}, labels_.options());
  // Keep enough buffers for the queue, the batch being filled and a few held by the caller;
  // beyond that (a caller keeping many batches) allocate unpooled ones.
  if (static_cast<int>(pool_.size()) < prefetch_ + 4) pool_.push_back(b);
  return b;
}

absl::StatusOr<Batch> BatchLoader::Produce(int64_t step) {
  try {
    sampler_.BatchIndices(step, indices_.data());
    Batch batch = AcquireBuffers();
    const char* src_x = static_cast<const char*>(images_.data_ptr());
    const int64_t* src_y = labels_.data_ptr<int64_t>();
    char* dst_x = static_cast<char*>(batch.x.data_ptr());
    int64_t* dst_y = batch.y.data_ptr<int64_t>();
    for (int64_t j = 0; j < local_batch_; ++j) {
      const int64_t row = indices_[j];
      std::memcpy(dst_x + j * row_bytes_, src_x + row * row_bytes_, row_bytes_);
      dst_y[j] = src_y[row];
    }
    batch.step = step;
    batch.epoch = step / steps_per_epoch_;
    return batch;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("BatchLoader: gathering the batch of step ", step, ": ",
                                            e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("BatchLoader: gathering the batch of step ", step, ": ", e.what()));
  }
}

}  // namespace qsr
