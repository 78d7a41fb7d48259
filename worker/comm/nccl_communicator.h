// NcclCommunicator: the GPU Communicator, over NCCL.
//
// Lifecycle. Create() bootstraps one NCCL communicator of `size` ranks through the store: rank 0
// calls ncclGetUniqueId and publishes the id's bytes under the key "nccl_id"; every other rank
// waits for that key (until the deadline) and checks its size. The store must already be scoped
// by run and generation (the trainer passes a PrefixStore
// "<run>/g<gen>/c0"), so a re-formed group never reads a previous group's id. Initialisation
// is non-blocking (ncclConfig_t::blocking = 0): Create() polls ncclCommGetAsyncError until the
// communicator is ready, fails or the deadline (`timeout` after the call) passes; on failure or
// timeout it aborts the half-built communicator and returns an error, so a missing peer never
// hangs the worker. A communicator is used for one membership generation and then destroyed.
//
// Collectives are enqueued on the stream the tensors are computed on (LibTorch's current CUDA
// stream when built against a CUDA LibTorch, QSR_TORCH_CUDA; otherwise the legacy default stream,
// which is LibTorch's default stream). Each call then waits for its own completion, polling a CUDA
// event and ncclCommGetAsyncError, bounded by `timeout`: a dead or stuck peer makes the call
// abort the communicator and return DEADLINE_EXCEEDED instead of hanging. (Waiting costs one host
// synchronisation per collective; the trainer issues one per averaging round, not per step.)
//
// Asynchronous all-reduce. StartAllReduceSum() records an event on the caller's compute stream,
// makes this communicator's own stream (created on first use) wait for it, and enqueues the
// all-reduce there, so that it overlaps with compute issued afterwards (backward). Its Wait()
// polls the collective's completion and NCCL's asynchronous errors like a synchronous call,
// bounded by `timeout` from the Wait() call: one host synchronisation per step for data-parallel
// training, taken after backward has been enqueued.
//
// Failures. An NCCL or CUDA error, or a timeout, aborts the communicator (ncclCommAbort, once)
// with the error as the reason. Once aborted, every call returns FAILED_PRECONDITION naming the
// reason. No exception escapes this class.
//
// Calls must match across ranks: same collectives, in the same order, with tensors of the same
// number of elements (and the same root for Broadcast). NCCL allows one rank per GPU per
// communicator.
//
// Thread-safety. Collectives are serialised by an internal mutex (one thread should issue them).
// Abort(), aborted(), abort_reason() and bytes_sent() may be called from any thread at any time;
// an Abort() during a collective makes it abort the NCCL communicator and return
// FAILED_PRECONDITION within about a millisecond. Nothing may race with the destructor.
#ifndef QSR_WORKER_COMM_NCCL_COMMUNICATOR_H_
#define QSR_WORKER_COMM_NCCL_COMMUNICATOR_H_

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/store.h"
#include "worker/comm/abort_latch.h"
#include "worker/comm/communicator.h"

// Opaque NCCL and CUDA handles, so that users of this header need neither nccl.h nor the CUDA
// runtime headers.
struct ncclComm;
struct CUevent_st;
struct CUstream_st;

namespace qsr {

class NcclCommunicator : public Communicator {
 public:
  // The store key under which rank 0 publishes the NCCL unique id.
  static constexpr char kUniqueIdKey[] = "nccl_id";

  // Joins rank `rank` of `size` on CUDA device `device_index` through `store` (scoped by the
  // caller, not owned; only used during Create; may be null when size is 1). `timeout` bounds the
  // whole of Create and each later collective. INVALID_ARGUMENT for a bad rank, size, device
  // index, timeout or null store, and for a published id of the wrong size (naming rank 0);
  // FAILED_PRECONDITION when there is no such CUDA device; DEADLINE_EXCEEDED when the id or a
  // peer does not arrive in time; UNAVAILABLE or INTERNAL for NCCL or CUDA errors.
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(Store* store, int rank, int size,
                                                                  int device_index,
                                                                  absl::Duration timeout);

  // Destroys the NCCL communicator after flushing it (ncclCommFinalize, bounded by the timeout)
  // if it is healthy; aborts it otherwise or if flushing does not finish in time.
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  int device_index() const { return device_index_; }

  // ncclAllReduce (sum) of a contiguous float32 tensor on this communicator's CUDA device, in
  // place. Every rank ends with bit-identical values. INVALID_ARGUMENT for other tensors; empty
  // tensors are no-ops. With size 1 the call still goes through NCCL (a local no-op copy).
  absl::Status AllReduceSum(torch::Tensor& tensor) override;
  // ncclAllReduce with ncclAvg (the division happens in NCCL's kernel); same rules otherwise,
  // except that it also takes bfloat16 tensors where AveragesBfloat16() (else INVALID_ARGUMENT).
  absl::Status AllReduceAverage(torch::Tensor& tensor) override;
  // Whether this build's NCCL has ncclBfloat16 for AllReduceAverage (NCCL >= 2.20).
  static bool AveragesBfloat16();
  // Starts ncclAllReduce (sum) of `tensor` on the communication stream (see above). Same tensor
  // rules as AllReduceSum; empty tensors complete at once.
  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceSum(
      torch::Tensor tensor) override;
  // ncclBroadcast from `root`, in place, of a contiguous tensor of any dtype on this
  // communicator's device (same byte size on every rank). INVALID_ARGUMENT for a root outside
  // [0, size) or another tensor.
  absl::Status Broadcast(torch::Tensor& tensor, int root) override;

  // Idempotent: the first reason sticks, the NCCL communicator is aborted once. Thread-safe.
  void Abort(const std::string& reason) override;
  bool aborted() const override { return abort_.is_set(); }
  // The reason given to the first Abort(), or "" if not aborted.
  std::string abort_reason() const;

  // Payload bytes this rank has sent in completed collectives, by the algorithms' traffic (see
  // below). NCCL picks its own algorithm (ring or tree) and ring order from the topology, so this
  // is the nominal ring volume, as for Gloo, not a measurement.
  int64_t bytes_sent() const override { return bytes_sent_.load(); }

  // A ring all-reduce of `total_bytes` sends 2(n-1)/n * total_bytes per rank (rounded down).
  static int64_t RingAllReduceBytesSent(int64_t total_bytes, int size);
  // A ring (chain) broadcast sends the payload once from every rank but the last of the chain;
  // the chain is taken in rank order from `root`, so (root - 1) mod n sends nothing. Summed over
  // ranks: exactly (n-1) * total_bytes.
  static int64_t BroadcastBytesSent(int64_t total_bytes, int rank, int root, int size);

 private:
  // AllReduceSum, or AllReduceAverage when `average`.
  absl::Status AllReduce(torch::Tensor& tensor, bool average);
  class Pending;

  NcclCommunicator(int rank, int size, int device_index, absl::Duration timeout, ncclComm* comm,
                   CUevent_st* done);

  absl::Status AbortedStatus() const;
  // OK unless aborted; once aborted (by Abort() from any thread, perhaps while NCCL was busy),
  // aborts the NCCL communicator if that has not happened yet and returns AbortedStatus().
  absl::Status CheckNotAbortedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // Checks that `tensor` is a defined, contiguous tensor on this communicator's device (and
  // float32 if `need_float`); `op` names the collective in the error.
  absl::Status CheckTensor(const torch::Tensor& tensor, const char* op, bool need_float) const;
  // After an NCCL call returned `result`: waits until the operation is enqueued and has completed
  // on `stream`, bounded by timeout_. On failure aborts the communicator and returns the error.
  absl::Status Complete(const char* op, int result, CUstream_st* stream)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // After an NCCL call returned `result`: waits (until `deadline`) while the non-blocking
  // communicator is still enqueueing it. On failure aborts the communicator.
  absl::Status Enqueued(const char* op, int result, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // Waits until `event` (recorded after a collective) has completed, watching NCCL's
  // asynchronous errors and aborts, until `deadline`. On failure aborts the communicator.
  absl::Status AwaitEvent(const char* op, CUevent_st* event, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // Waits for a started all-reduce (Pending::Wait): AwaitEvent under the lock, bounded by the
  // timeout; counts its bytes on success.
  absl::Status WaitStarted(CUevent_st* event, int64_t bytes);
  // Destroys an event created for a started all-reduce, on this communicator's device.
  void DestroyEvent(CUevent_st* event);
  // Aborts the communicator because `op` failed with `what`; returns `code` with the reason (or
  // the earlier abort's status if another thread aborted first).
  absl::Status Fail(absl::StatusCode code, const char* op, const std::string& what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);
  // ncclCommAbort, once; later calls do nothing.
  void AbortNcclLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(op_mu_);

  const int rank_;
  const int size_;
  const int device_index_;
  const absl::Duration timeout_;

  // Serialises collectives and guards the NCCL handle; timed, so that Abort() never waits long.
  std::timed_mutex op_mu_;
  // Null once aborted or destroyed.
  ncclComm* comm_ ABSL_GUARDED_BY(op_mu_);
  CUevent_st* done_ ABSL_GUARDED_BY(op_mu_);  // Recorded after each collective, then polled.
  // Where started (asynchronous) all-reduces run; created on first use.
  CUstream_st* comm_stream_ ABSL_GUARDED_BY(op_mu_) = nullptr;

  AbortLatch abort_;

  std::atomic<int64_t> bytes_sent_{0};
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_NCCL_COMMUNICATOR_H_
