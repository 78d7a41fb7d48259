// GlooCommunicator: the CPU Communicator, over Gloo's TCP transport.
//
// Lifecycle. Create() builds one full mesh of TCP connections among `size` ranks: each rank binds
// `options.hostname`, publishes its addresses under the given store and connects to every peer.
// The store must already be scoped (PrefixStore) by run, generation and communicator sequence
// number; Gloo's own keys are just "0", "1", ... A missing peer makes Create() fail with
// DEADLINE_EXCEEDED (or UNAVAILABLE) after about `options.timeout`; it never hangs. A communicator
// is used for one membership generation and then destroyed; destroying it closes its connections,
// so peers still inside a collective fail promptly instead of waiting for their timeout.
//
// Failures. Every collective is bounded by `options.timeout`. Any Gloo error (a timeout, a peer
// that closed its connections or aborted) aborts the communicator with the error as the reason
// and returns DEADLINE_EXCEEDED (timeouts) or UNAVAILABLE (connection errors). Once aborted,
// every call returns FAILED_PRECONDITION naming the reason. Aborting closes this rank's
// connections, so its peers' collectives fail fast as well. No exception escapes this class.
// Calls must match across ranks: same collectives, in the same order, with tensors of the same
// number of elements (and the same root for Broadcast).
//
// Asynchronous all-reduce. StartAllReduceSum() queues the all-reduce for this communicator's
// collective thread (started on first use, joined by the destructor), which runs queued
// collectives one by one in start order, each exactly as AllReduceSum(). A PendingCollective's
// Wait() is bounded by `timeout` (plus a few seconds' grace) after its collective began; past
// that it aborts the communicator. Destroying the communicator with collectives still queued or
// running aborts it first, so that they fail fast; their handles must be gone by then.
//
// Thread-safety. Collectives are serialised by an internal mutex (one thread should issue them).
// Abort(), aborted(), abort_reason() and bytes_sent() may be called from any thread at any time,
// including while another thread is inside a collective: Abort() then makes that collective
// return FAILED_PRECONDITION promptly. Nothing may race with the destructor.
//
// Process-wide side effect: the first Create() with size > 1 sets SIGPIPE to SIG_IGN if it is
// still SIG_DFL (Debian's Gloo writes with writev(), which raises SIGPIPE on a closed peer).
#ifndef QSR_WORKER_COMM_GLOO_COMMUNICATOR_H_
#define QSR_WORKER_COMM_GLOO_COMMUNICATOR_H_

#include <torch/torch.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/store.h"
#include "worker/comm/abort_latch.h"
#include "worker/comm/communicator.h"

namespace gloo {
class Context;
}  // namespace gloo

namespace qsr {

struct GlooOptions {
  // Address to bind and advertise for the TCP transport (an IP address or a resolvable name).
  std::string hostname = "127.0.0.1";
  // Bound on rendezvous (Create) and on every collective. Must be positive.
  absl::Duration timeout = absl::Seconds(60);
  // Fold the averaging division into the ring's last reductions (no pass of its own). Create()
  // keeps it on only where a probe collective shows that this Gloo cuts the ring as qsr expects,
  // agreed by all ranks; otherwise, or when false, AllReduceAverage sums and then divides.
  bool fused_average = true;
};

class GlooCommunicator : public Communicator {
 public:
  // Connects rank `rank` of `size` through `store` (scoped by the caller, not owned; only used
  // during Create). INVALID_ARGUMENT for a null store, size < 1, rank outside [0, size), an empty
  // hostname or a non-positive timeout. Size 1 needs no store traffic and no sockets.
  static absl::StatusOr<std::unique_ptr<GlooCommunicator>> Create(Store* store, int rank, int size,
                                                                  const GlooOptions& options);

  ~GlooCommunicator() override;
  GlooCommunicator(const GlooCommunicator&) = delete;
  GlooCommunicator& operator=(const GlooCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "gloo"; }

  // Ring all-reduce (gloo::allreduce, RING) of a contiguous float32 or bfloat16 CPU tensor, in
  // place (bfloat16 sums are formed in float32 and rounded to nearest even at each hop). Every
  // rank ends with bit-identical values: each chunk is summed on one rank and then copied around
  // the ring. INVALID_ARGUMENT (naming dtype/device/layout) for other tensors; size 1 and empty
  // tensors are no-ops.
  absl::Status AllReduceSum(torch::Tensor& tensor) override;
  // The same ring all-reduce, with the division by size folded into each chunk's last reduction
  // (see AllReduce), so the mean costs no more than the sum.
  absl::Status AllReduceAverage(torch::Tensor& tensor) override;
  // Queues AllReduceSum(tensor) for the collective thread (see above). Size 1 and empty tensors
  // complete at once.
  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceSum(
      torch::Tensor tensor) override;
  // Binomial-tree broadcast (gloo::broadcast) from `root`, in place. Any dtype; the tensor must be
  // a defined, contiguous CPU tensor of the same byte size on every rank. INVALID_ARGUMENT for a
  // root outside [0, size).
  absl::Status Broadcast(torch::Tensor& tensor, int root) override;

  // Idempotent: the first reason sticks. Thread-safe.
  void Abort(const std::string& reason) override;
  bool aborted() const override;
  // The reason given to the first Abort(), or "" if not aborted.
  std::string abort_reason() const;
  // Whether AllReduceAverage divides inside the ring (see GlooOptions::fused_average). Size 1:
  // false (nothing to divide).
  bool fused_average() const { return fused_average_; }

  // Payload bytes this rank has put on the wire in completed collectives, counted exactly as the
  // algorithms send them (see the two functions below).
  int64_t bytes_sent() const override { return bytes_sent_.load(); }

  // Bytes that `rank` sends in Gloo's ring all-reduce of `total_bytes` of `element_size`-byte
  // elements: 2(n-1)/n * total_bytes, exactly when the buffer splits into equal segments (Gloo
  // cuts it into n * k segments of <= 1 MiB, k >= 2 per rank); otherwise ranks whose chunk
  // reaches past the end send a little less. Summed over ranks: exactly 2(n-1) * total_bytes.
  static int64_t RingAllReduceBytesSent(int64_t total_bytes, int rank, int size,
                                        int64_t element_size = 4);
  // Bytes that `rank` sends in Gloo's binomial-tree broadcast of `total_bytes` from `root`: the
  // whole payload once per child (the root sends it ceil(log2 n) times, leaves 0; the ranks
  // together send (n-1) * total_bytes).
  static int64_t BroadcastBytesSent(int64_t total_bytes, int rank, int root, int size);

 private:
  struct AsyncOp;
  class Pending;

  GlooCommunicator(int rank, int size, absl::Duration timeout,
                   std::shared_ptr<gloo::Context> context);

  // AllReduceSum, or AllReduceAverage when `average`.
  absl::Status AllReduce(torch::Tensor& tensor, bool average);
  // One gloo ring all-reduce of `numel` float32 (or bfloat16) elements at `data`, segments of at
  // most `max_segment_bytes`. With `divide_chunk`, the last reductions on this rank's chunk (as
  // GlooRingLayout places it) divide by size; returns the number of elements divided, or -1
  // when that was not exactly the chunk. Throws what Gloo throws. Caller holds op_mu_.
  int64_t RunRing(char* data, int64_t numel, bool bf16, bool divide_chunk,
                  int64_t max_segment_bytes, bool kill_in_collective);
  // Two small collectives that check, on all ranks together, that divide_chunk averages exactly
  // on this Gloo build. Throws what Gloo throws. Caller holds op_mu_.
  bool ProbeRing();
  // INVALID_ARGUMENT unless `tensor` is a defined, contiguous float32 CPU tensor.
  static absl::Status CheckAllReduceTensor(const torch::Tensor& tensor);
  // The collective thread's body: runs queued operations until stopping and drained.
  void AsyncLoop();
  absl::Status AbortedStatus() const;
  // Converts a Gloo failure during `op` into a status and aborts the communicator.
  absl::Status FailCollective(const std::string& op, const std::string& what);
  // Makes every pending and future operation on this rank's connections fail, and closes them.
  void SignalConnections();

  const int rank_;
  const int size_;
  const absl::Duration timeout_;
  // Null for size 1. Set once in the constructor; never reset before destruction.
  const std::shared_ptr<gloo::Context> context_;

  std::mutex op_mu_;  // Serialises collectives.
  uint32_t next_tag_ ABSL_GUARDED_BY(op_mu_) = 0;
  // Set once by Create(), before the communicator is handed out.
  bool fused_average_ = false;

  AbortLatch abort_;

  std::atomic<int64_t> bytes_sent_{0};

  std::mutex async_mu_;
  std::condition_variable async_cv_;
  std::deque<std::shared_ptr<AsyncOp>> queue_ ABSL_GUARDED_BY(async_mu_);
  bool async_busy_ ABSL_GUARDED_BY(async_mu_) = false;  // an operation is running
  bool async_stopping_ ABSL_GUARDED_BY(async_mu_) = false;
  std::thread async_thread_;  // started by the first StartAllReduceSum that needs it
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_GLOO_COMMUNICATOR_H_
