// BatchLoader: this worker's batches, produced ahead of time from a DataSource.
//
// Two orders:
//  - Sharded (Create): the batch of global step t holds ShardSampler's indices for t (see
//    sampler.h); endless (epoch after epoch). Example j of the batch is produced with the
//    augmentation key ExampleKey(augment_seed, t, rank * local_batch + j), so a batch is a pure
//    function of (data, sampler config, augment_seed, t): the same after a Seek() or restart,
//    whatever num_workers is, and the augmented global batch does not depend on how it is split
//    among workers.
//  - Sequential (CreateSequential), for evaluation: batch k holds the examples
//    [begin + k * batch, min(begin + (k + 1) * batch, end)), the last one possibly smaller; then
//    Next() returns OutOfRange. Keys are ExampleKey(augment_seed, 0, index).
//
// Examples are written into contiguous float32 tensors taken from a small pool of preallocated
// buffers (a buffer is reused only once nothing else references its storage, so a batch the
// caller still holds is never overwritten). `num_workers` threads share the examples of a batch
// (the producing thread is one of them; the others are helpers owned by the loader): a JPEG
// source decodes in parallel. With prefetch > 0 a background thread keeps up to `prefetch`
// batches ready, overlapping production with compute; with prefetch == 0 Next() produces on the
// caller's thread (helped by num_workers - 1 helpers).
//
// Thread-compatible, one consumer: Create(), Seek(), Next() and the destructor must be called from
// one thread (or externally serialised). The threads are internal. Destroying the loader while it
// prefetches is safe: the examples in progress finish (one per thread), the rest of the batch is
// abandoned, the threads are joined. Every wait is bounded. Nothing throws.
#ifndef QSR_WORKER_DATA_BATCH_LOADER_H_
#define QSR_WORKER_DATA_BATCH_LOADER_H_

#include <ATen/core/Tensor.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "worker/data/data_source.h"
#include "worker/data/sampler.h"

namespace qsr {

struct Batch {
  at::Tensor x;        // float32, n x (example shape), contiguous, CPU
  at::Tensor y;        // int64, n
  int64_t step = -1;   // sharded: the global step; sequential: the batch number
  int64_t epoch = -1;  // sharded: step / steps_per_epoch; sequential: 0
};

struct LoaderOptions {
  int prefetch = 2;     // batches produced ahead by a background thread, in [0, 64]
  int num_workers = 1;  // threads producing the examples of a batch ("nw"), in [1, 64]
  uint64_t augment_seed = 0;
  int64_t start_step = 0;  // the first Next() returns this step (>= 0)
  // Allocate the batch buffers in page-locked memory, so that a copy to a GPU with
  // non_blocking=true is asynchronous and faster. Needs a CUDA build of LibTorch with a GPU
  // (Create() returns InvalidArgument otherwise).
  bool pin_memory = false;
};

class BatchLoader {
 public:
  // Sharded order. `config` as in ShardSampler::Create (steps_per_epoch 0 = as many as fit).
  // InvalidArgument on a null source, a bad config or bad options.
  static absl::StatusOr<std::unique_ptr<BatchLoader>> Create(
      std::shared_ptr<const DataSource> source, const SamplerConfig& config,
      const LoaderOptions& options = LoaderOptions{});
  // Sharded order over an in-memory dataset without augmentation (MakeTensorSource(data)): `data`
  // must be on the CPU with floating point images N x ... (converted to float32 if they are not)
  // and int64 labels N; its tensors are shared and must not be modified while the loader lives.
  static absl::StatusOr<std::unique_ptr<BatchLoader>> Create(const Dataset& data,
                                                             const SamplerConfig& config,
                                                             int prefetch = 2,
                                                             int64_t start_step = 0);
  // Sequential order over [begin, end) (0 <= begin < end <= size) in batches of `batch` (>= 1).
  // options.start_step is the first batch number.
  static absl::StatusOr<std::unique_ptr<BatchLoader>> CreateSequential(
      std::shared_ptr<const DataSource> source, int64_t begin, int64_t end, int64_t batch,
      const LoaderOptions& options = LoaderOptions{});
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The batch of the next step (start_step, then +1 each call, or the step given to Seek()).
  // Waits at most `timeout` for the background thread: DeadlineExceeded if it has not delivered by
  // then (a later call may still succeed, for the same step). OutOfRange after the last batch of
  // a sequential loader. The source's error (e.g. DataLoss naming a corrupt file) if producing
  // failed; it repeats until Seek().
  absl::StatusOr<Batch> Next(absl::Duration timeout = absl::Seconds(60));

  // Discards prefetched batches and restarts at `step` (>= 0; InvalidArgument otherwise). Clears
  // a previous error.
  absl::Status Seek(int64_t step);

  // The step the next Next() returns.
  int64_t next_step() const;
  // Sharded: the sampler's steps per epoch; sequential: the number of batches.
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // Examples per (full) batch.
  int64_t local_batch() const { return local_batch_; }
  const DataSource& source() const { return *source_; }

 private:
  class Helpers;  // the num_workers - 1 helper threads

  struct Plan {
    bool sequential = false;
    int64_t begin = 0, end = 0;  // sequential
    int64_t position0 = 0;       // sharded: rank * local_batch
  };

  BatchLoader(std::shared_ptr<const DataSource> source, const ShardSampler* sampler,
              const Plan& plan, int64_t local_batch, int64_t steps_per_epoch,
              const LoaderOptions& options);
  static absl::Status ValidateOptions(const LoaderOptions& options);
  void Run();  // the background thread
  // Produces the batch of `step`. Touches sampler_, indices_ and pool_: only the producer (the
  // background thread, or the caller when prefetch_ == 0) calls it.
  absl::StatusOr<Batch> Produce(int64_t step);
  Batch AcquireBuffers();
  bool Finished(int64_t step) const { return plan_.sequential && step >= steps_per_epoch_; }

  const std::shared_ptr<const DataSource> source_;
  const Plan plan_;
  const int prefetch_;
  const uint64_t augment_seed_;
  const int64_t local_batch_;
  const int64_t steps_per_epoch_;
  const std::vector<int64_t> example_shape_;
  const int64_t example_numel_;
  const bool pin_memory_;

  // Producer-only state.
  std::unique_ptr<ShardSampler> sampler_;  // null when sequential
  std::vector<int64_t> indices_;
  std::vector<Batch> pool_;
  std::unique_ptr<Helpers> helpers_;
  std::atomic<bool> cancel_{false};  // set by the destructor: abandon the batch in progress

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;  // ready_ gained a batch, or error_ set
  std::condition_variable space_cv_;  // ready_ shrank, Seek(), or stop_
  std::deque<Batch> ready_;           // consecutive steps from next_consume_
  int64_t next_consume_ = 0;
  int64_t next_produce_ = 0;
  uint64_t generation_ = 0;  // bumped by Seek(); a batch produced for an older one is discarded
  absl::Status error_;
  bool stop_ = false;
  std::thread thread_;  // last: started after everything above is initialised
};

}  // namespace qsr

#endif  // QSR_WORKER_DATA_BATCH_LOADER_H_
