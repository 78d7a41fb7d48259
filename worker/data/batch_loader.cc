#include "worker/data/batch_loader.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <exception>
#include <functional>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

constexpr int kMaxPrefetch = 64;
constexpr int kMaxWorkers = 64;
// How long an idle thread sleeps between checks of its stop flag.
constexpr std::chrono::milliseconds kPoll(100);

// True when `t` is referenced only by the pool (no tensor or view the caller holds shares it).
bool Unshared(const at::Tensor& t) { return t.use_count() == 1 && t.storage().use_count() == 1; }

}  // namespace

// Threads that share the items of one job with the thread calling Run(): each thread takes the
// next unclaimed index until none is left, so a slow item (a large JPEG) does not hold back the
// others. A helper joins a job only while it is open; Run() closes it once its own loop ends and
// then waits for the helpers still inside an item.
class BatchLoader::Helpers {
 public:
  // fn(i) returns false to stop the job (an error); it must not throw.
  using Fn = std::function<bool(int64_t)>;

  explicit Helpers(int count) {
    for (int i = 0; i < count; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~Helpers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  // Runs fn(i) for i in [0, n) until done, fn returns false, or `cancel` is set; returns once no
  // thread is inside fn.
  void Run(int64_t n, const Fn& fn, const std::atomic<bool>& cancel) {
    if (threads_.empty()) {
      for (int64_t i = 0; i < n && !cancel.load(std::memory_order_relaxed); ++i) {
        if (!fn(i)) break;
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      cancel_ = &cancel;
      n_ = n;
      next_.store(0);
      abort_.store(false);
      ++job_;
      open_ = true;
    }
    work_cv_.notify_all();
    Work(fn, n, cancel);
    std::unique_lock<std::mutex> lock(mu_);
    open_ = false;
    while (busy_ > 0) idle_cv_.wait_for(lock, kPoll);
    fn_ = nullptr;
    cancel_ = nullptr;
  }

 private:
  void Work(const Fn& fn, int64_t n, const std::atomic<bool>& cancel) {
    while (!cancel.load(std::memory_order_relaxed) && !abort_.load(std::memory_order_relaxed)) {
      const int64_t i = next_.fetch_add(1);
      if (i >= n) return;
      if (!fn(i)) abort_.store(true);
    }
  }

  void Loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (!open_ || job_ == seen) {
        work_cv_.wait_for(lock, kPoll);
        continue;
      }
      seen = job_;
      ++busy_;
      const Fn* fn = fn_;
      const std::atomic<bool>* cancel = cancel_;
      const int64_t n = n_;
      lock.unlock();
      Work(*fn, n, *cancel);
      lock.lock();
      --busy_;
      idle_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_;  // a job opened, or stop_
  std::condition_variable idle_cv_;  // busy_ dropped
  const Fn* fn_ = nullptr;
  const std::atomic<bool>* cancel_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> abort_{false};
  uint64_t job_ = 0;
  bool open_ = false;
  int busy_ = 0;  // helpers inside the open (or just closed) job
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: started after everything above is initialised
};

absl::Status BatchLoader::ValidateOptions(const LoaderOptions& options) {
  if (options.prefetch < 0 || options.prefetch > kMaxPrefetch) {
    return absl::InvalidArgumentError(absl::StrCat("BatchLoader: prefetch must be in [0, ",
                                                   kMaxPrefetch, "], got ", options.prefetch));
  }
  if (options.num_workers < 1 || options.num_workers > kMaxWorkers) {
    return absl::InvalidArgumentError(absl::StrCat("BatchLoader: num_workers must be in [1, ",
                                                   kMaxWorkers, "], got ", options.num_workers));
  }
  if (options.start_step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchLoader: start_step must be >= 0, got ", options.start_step));
  }
  if (options.pin_memory) {
    try {
      at::empty({1}, at::TensorOptions().dtype(at::kFloat).pinned_memory(true));
    } catch (const c10::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("BatchLoader: pin_memory needs a CUDA build of LibTorch and a GPU: ",
                       e.what_without_backtrace()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BatchLoader>> BatchLoader::Create(
    std::shared_ptr<const DataSource> source, const SamplerConfig& config,
    const LoaderOptions& options) {
  if (source == nullptr) return absl::InvalidArgumentError("BatchLoader: no data source");
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  absl::StatusOr<ShardSampler> sampler = ShardSampler::Create(source->size(), config);
  if (!sampler.ok()) return sampler.status();
  Plan plan;
  plan.position0 = static_cast<int64_t>(config.rank) * config.local_batch;
  try {
    return std::unique_ptr<BatchLoader>(new BatchLoader(std::move(source), &*sampler, plan,
                                                        sampler->local_batch(),
                                                        sampler->steps_per_epoch(), options));
  } catch (const std::exception& e) {  // std::system_error from std::thread, std::bad_alloc
    return absl::InternalError(absl::StrCat("BatchLoader: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<BatchLoader>> BatchLoader::Create(const Dataset& data,
                                                                 const SamplerConfig& config,
                                                                 int prefetch, int64_t start_step) {
  absl::StatusOr<std::shared_ptr<const DataSource>> source = MakeTensorSource(data);
  if (!source.ok()) {
    return absl::Status(source.status().code(),
                        absl::StrCat("BatchLoader: ", source.status().message()));
  }
  LoaderOptions options;
  options.prefetch = prefetch;
  options.start_step = start_step;
  return Create(*std::move(source), config, options);
}

absl::StatusOr<std::unique_ptr<BatchLoader>> BatchLoader::CreateSequential(
    std::shared_ptr<const DataSource> source, int64_t begin, int64_t end, int64_t batch,
    const LoaderOptions& options) {
  if (source == nullptr) return absl::InvalidArgumentError("BatchLoader: no data source");
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (begin < 0 || begin >= end || end > source->size() || batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("BatchLoader: want 0 <= begin < end <= ", source->size(),
                     " and batch >= 1; got begin ", begin, ", end ", end, ", batch ", batch));
  }
  Plan plan;
  plan.sequential = true;
  plan.begin = begin;
  plan.end = end;
  try {
    return std::unique_ptr<BatchLoader>(new BatchLoader(
        std::move(source), nullptr, plan, batch, (end - begin + batch - 1) / batch, options));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("BatchLoader: ", e.what()));
  }
}

BatchLoader::BatchLoader(std::shared_ptr<const DataSource> source, const ShardSampler* sampler,
                         const Plan& plan, int64_t local_batch, int64_t steps_per_epoch,
                         const LoaderOptions& options)
    : source_(std::move(source)),
      plan_(plan),
      prefetch_(options.prefetch),
      augment_seed_(options.augment_seed),
      local_batch_(local_batch),
      steps_per_epoch_(steps_per_epoch),
      example_shape_(source_->example_shape()),
      example_numel_(std::accumulate(example_shape_.begin(), example_shape_.end(), int64_t{1},
                                     std::multiplies<int64_t>())),
      pin_memory_(options.pin_memory),
      sampler_(sampler != nullptr ? std::make_unique<ShardSampler>(*sampler) : nullptr),
      indices_(local_batch),
      helpers_(std::make_unique<Helpers>(options.num_workers - 1)),
      next_consume_(options.start_step),
      next_produce_(options.start_step) {
  if (prefetch_ > 0) thread_ = std::thread([this] { Run(); });
}

BatchLoader::~BatchLoader() {
  cancel_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  space_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  helpers_.reset();  // joins the helpers, idle now that no batch is in progress
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
    if (Finished(step)) {
      return absl::OutOfRangeError(
          absl::StrCat("BatchLoader: all ", steps_per_epoch_, " batches delivered"));
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
  if (ready_.empty() && Finished(next_consume_)) {
    return absl::OutOfRangeError(
        absl::StrCat("BatchLoader: all ", steps_per_epoch_, " batches delivered"));
  }
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
    if (static_cast<int>(ready_.size()) >= prefetch_ || !error_.ok() || Finished(next_produce_)) {
      space_cv_.wait_for(lock, kPoll);
      continue;
    }
    const int64_t step = next_produce_;
    const uint64_t generation = generation_;
    lock.unlock();
    absl::StatusOr<Batch> batch = Produce(step);
    lock.lock();
    if (generation != generation_ || stop_) continue;  // a Seek() overtook this batch
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
  std::vector<int64_t> shape = example_shape_;
  shape.insert(shape.begin(), local_batch_);
  Batch b;
  b.x = at::empty(shape, at::TensorOptions().dtype(at::kFloat).pinned_memory(pin_memory_));
  b.y = at::empty({local_batch_}, at::TensorOptions().dtype(at::kLong).pinned_memory(pin_memory_));
  // Keep enough buffers for the queue, the batch being filled and a few held by the caller;
  // beyond that (a caller keeping many batches) allocate unpooled ones.
  if (static_cast<int>(pool_.size()) < prefetch_ + 4) pool_.push_back(b);
  return b;
}

absl::StatusOr<Batch> BatchLoader::Produce(int64_t step) {
  try {
    int64_t count = local_batch_;
    if (plan_.sequential) {
      const int64_t first = plan_.begin + step * local_batch_;
      count = std::min(local_batch_, plan_.end - first);
      std::iota(indices_.begin(), indices_.begin() + count, first);
    } else {
      sampler_->BatchIndices(step, indices_.data());
    }
    Batch batch = AcquireBuffers();
    float* x = batch.x.data_ptr<float>();
    int64_t* y = batch.y.data_ptr<int64_t>();
    std::mutex error_mu;
    int64_t error_at = std::numeric_limits<int64_t>::max();
    absl::Status error;
    const Helpers::Fn fn = [&](int64_t j) {
      const int64_t index = indices_[j];
      const uint64_t key = plan_.sequential ? ExampleKey(augment_seed_, 0, index)
                                            : ExampleKey(augment_seed_, step, plan_.position0 + j);
      absl::Status s;
      try {
        absl::StatusOr<int64_t> label = source_->Example(index, key, x + j * example_numel_);
        if (label.ok()) {
          y[j] = *label;
          return true;
        }
        s = label.status();
      } catch (const std::exception& e) {
        s = absl::InternalError(e.what());
      }
      std::lock_guard<std::mutex> lock(error_mu);
      if (j < error_at) {  // report the first failing example of the batch
        error_at = j;
        error = absl::Status(s.code(), absl::StrCat("BatchLoader: step ", step, ", example ", index,
                                                    ": ", s.message()));
      }
      return false;
    };
    helpers_->Run(count, fn, cancel_);
    if (!error.ok()) return error;
    if (cancel_.load()) return absl::CancelledError("BatchLoader: shutting down");
    if (count < local_batch_) {
      batch.x = batch.x.narrow(0, 0, count);
      batch.y = batch.y.narrow(0, 0, count);
    }
    batch.step = step;
    batch.epoch = plan_.sequential ? 0 : step / steps_per_epoch_;
    return batch;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("BatchLoader: producing the batch of step ", step, ": ",
                                            e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("BatchLoader: producing the batch of step ", step, ": ", e.what()));
  }
}

}  // namespace qsr
