// BatchLoader: this worker's local batches for consecutive global steps, prepared ahead of time.
//
// The batch of global step t is ShardSampler's index list for t (see sampler.h) gathered from the
// in-memory dataset: rows are copied with memcpy into contiguous tensors taken from a small pool
// of preallocated buffers (a buffer is reused only once nothing else references its storage, so a
// batch the caller still holds is never overwritten). With prefetch > 0 a background thread keeps
// up to `prefetch` batches ready, overlapping the gather with compute; with prefetch == 0 Next()
// gathers on the caller's thread.
//
// Thread-compatible, one consumer: Create(), Seek(), Next() and the destructor must be called from
// one thread (or externally serialised). The background thread is internal. Destroying the loader
// while it prefetches is safe: it stops the thread after at most one batch's gather and joins it.
// Every wait is bounded. Nothing throws.
#ifndef QSR_WORKER_DATA_BATCH_LOADER_H_
#define QSR_WORKER_DATA_BATCH_LOADER_H_

#include <ATen/core/Tensor.h>

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
#include "worker/data/fashion_mnist.h"
#include "worker/data/sampler.h"

namespace qsr {

struct Batch {
  at::Tensor x;        // float32, local_batch x (dataset image dims), contiguous, CPU
  at::Tensor y;        // int64, local_batch
  int64_t step = -1;   // global step
  int64_t epoch = -1;  // step / steps_per_epoch
};

class BatchLoader {
 public:
  // `data` must be on the CPU with images of any float dtype/shape N x ...; its tensors are
  // shared (not copied; made contiguous if they are not) and must not be modified while the loader
  // lives. `config` as in ShardSampler::Create (steps_per_epoch 0 = as many as fit). The first
  // Next() returns step `start_step` (>= 0). InvalidArgument on a bad config, dataset or prefetch
  // (must be in [0, 64]).
  static absl::StatusOr<std::unique_ptr<BatchLoader>> Create(const Dataset& data,
                                                             const SamplerConfig& config,
                                                             int prefetch = 2,
                                                             int64_t start_step = 0);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // The batch of the next step (start_step, then +1 each call, or the step given to Seek()).
  // Waits at most `timeout` for the background thread: DeadlineExceeded if it has not delivered by
  // then (a later call may still succeed, for the same step). Internal if gathering failed (the
  // error repeats until Seek()).
  absl::StatusOr<Batch> Next(absl::Duration timeout = absl::Seconds(60));

  // Discards prefetched batches and restarts at `step` (>= 0; InvalidArgument otherwise). Clears
  // a previous gathering error.
  absl::Status Seek(int64_t step);

  // The step the next Next() returns.
  int64_t next_step() const;
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t local_batch() const { return local_batch_; }

 private:
  BatchLoader(const Dataset& data, const ShardSampler& sampler, int prefetch, int64_t start_step);
  void Run();  // the background thread
  // Gathers the batch of `step`. Touches sampler_, indices_ and pool_: only the producer (the
  // background thread, or the caller when prefetch_ == 0) calls it.
  absl::StatusOr<Batch> Produce(int64_t step);
  Batch AcquireBuffers();

  const at::Tensor images_;  // contiguous float
  const at::Tensor labels_;  // contiguous int64
  const int prefetch_;
  const int64_t local_batch_;
  const int64_t steps_per_epoch_;
  const int64_t row_bytes_;

  // Producer-only state.
  ShardSampler sampler_;
  std::vector<int64_t> indices_;
  std::vector<Batch> pool_;

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;  // ready_ gained a batch, or error_ set
  std::condition_variable space_cv_;  // ready_ shrank, Seek(), or stop_
  std::deque<Batch> ready_;           // consecutive steps from next_consume_
  int64_t next_consume_ = 0;
  int64_t next_produce_ = 0;
  uint64_t generation_ = 0;  // bumped by Seek(); a batch gathered for an older one is discarded
  absl::Status error_;
  bool stop_ = false;
  std::thread thread_;  // last: started after everything above is initialised
};

}  // namespace qsr

#endif  // QSR_WORKER_DATA_BATCH_LOADER_H_
