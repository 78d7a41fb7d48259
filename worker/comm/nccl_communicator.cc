#include "worker/comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#ifdef QSR_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/backoff.h"

namespace qsr {
namespace {

// The longest the destructor waits for a healthy communicator to flush before aborting it.
constexpr absl::Duration kMaxFinalizeWait = absl::Seconds(30);

std::string NcclError(ncclResult_t result) {
  std::string text = ncclGetErrorString(result);
  // The last error's details (which peer, which socket); the comm argument is unused by NCCL.
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && last[0] != '\0') absl::StrAppend(&text, " (", last, ")");
  return text;
}

// System and remote errors are a peer or the network going away; the rest are local bugs.
absl::StatusCode CodeFor(ncclResult_t result) {
  return result == ncclSystemError || result == ncclRemoteError ? absl::StatusCode::kUnavailable
                                                                : absl::StatusCode::kInternal;
}

// Makes `device` the calling thread's current CUDA device for the guard's lifetime: NCCL and the
// CUDA runtime act on the current device, and the caller's thread may have another one selected.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ == device) {
      ok_ = true;
      previous_ = -1;  // Nothing to restore.
    } else {
      ok_ = cudaSetDevice(device) == cudaSuccess;
    }
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  bool ok() const { return ok_; }

 private:
  int previous_ = -1;
  bool ok_ = false;
};

// Paces a polling loop: collectives on local GPUs finish in microseconds, so the first polls only
// yield; a long wait (a slow or missing peer) backs off to 1 ms sleeps so it costs little CPU.
class Backoff {
 public:
  void Wait() {
    if (spins_ < kSpins) {
      ++spins_;
      std::this_thread::yield();
      return;
    }
    absl::SleepFor(BackoffDelay(kSleeps, sleeps_));
    sleeps_ = std::min(sleeps_ + 1, 16);  // past the cap already; stays well inside an int
  }

 private:
  static constexpr int kSpins = 2000;
  static constexpr BackoffPolicy kSleeps{absl::Microseconds(20), absl::Milliseconds(1)};
  int spins_ = 0;
  int sleeps_ = 0;
};

// Waits while `state` is ncclInProgress, polling ncclCommGetAsyncError, until `deadline`.
// Returns the final state (ncclInProgress if the deadline passed first).
ncclResult_t WaitWhileInProgress(ncclComm_t comm, ncclResult_t state, absl::Time deadline) {
  Backoff backoff;
  while (state == ncclInProgress && absl::Now() < deadline) {
    backoff.Wait();
    ncclResult_t query = ncclCommGetAsyncError(comm, &state);
    if (query != ncclSuccess) state = query;
  }
  return state;
}

// The stream LibTorch computes on for `device`: its current stream when built against a CUDA
// LibTorch, else the legacy default stream (LibTorch's default stream is the legacy one).
// LibTorch's exception (no such device, no CUDA) comes back as INTERNAL naming `op`.
absl::StatusOr<cudaStream_t> ComputeStream(int device, const char* op) {
#ifdef QSR_TORCH_CUDA
  try {
    return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("nccl ", op, ": no CUDA stream: ", e.what()));
  }
#else
  (void)device;
  (void)op;
  return cudaStreamLegacy;
#endif
}

// Create's arguments; `store` may be null only when `size` is 1.
absl::Status CheckCreateArguments(const Store* store, int rank, int size, int device_index,
                                  absl::Duration timeout) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("nccl: size ", size, " < 1"));
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl: rank ", rank, " outside [0, ", size, ")"));
  }
  if (device_index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("nccl: device index ", device_index, " < 0"));
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl: timeout must be positive, got ", absl::FormatDuration(timeout)));
  }
  if (store == nullptr && size > 1) return absl::InvalidArgumentError("nccl: store is null");
  return absl::OkStatus();
}

// A non-zero rank's side of the id exchange: waits (until `deadline`) for the bytes rank 0
// published under `key` and checks that they are an ncclUniqueId. `where` prefixes errors.
absl::Status FetchUniqueId(Store* store, const char* key, absl::Time deadline,
                           const std::string& where, ncclUniqueId* id) {
  absl::StatusOr<std::vector<std::string>> got = store->Get({key}, deadline);
  if (!got.ok()) {
    return absl::Status(
        got.status().code(),
        absl::StrCat(where, "waiting for rank 0's NCCL unique id: ", got.status().message()));
  }
  const std::string& bytes = got->front();
  if (bytes.size() != sizeof(*id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "the NCCL unique id under \"", key, "\" has ", bytes.size(),
                     " bytes, expected ", sizeof(*id),
                     "; rank 0, which publishes it, is likely at fault "
                     "(built against another NCCL, or not an NCCL worker)"));
  }
  std::memcpy(id, bytes.data(), sizeof(*id));
  return absl::OkStatus();
}

// Rank 0's side: makes the id (on the current device) and, when there are peers, publishes its
// bytes under `key`.
absl::Status MakeUniqueId(Store* store, const char* key, int size, const std::string& where,
                          ncclUniqueId* id) {
  if (ncclResult_t r = ncclGetUniqueId(id); r != ncclSuccess) {
    return absl::Status(CodeFor(r), absl::StrCat(where, "ncclGetUniqueId: ", NcclError(r)));
  }
  if (size == 1) return absl::OkStatus();
  absl::Status s = store->Set(key, std::string(reinterpret_cast<const char*>(id), sizeof(*id)));
  if (!s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat(where, "publishing the NCCL unique id: ", s.message()));
  }
  return absl::OkStatus();
}

// FAILED_PRECONDITION unless this machine has CUDA device `device_index`.
absl::Status CheckDeviceExists(int device_index, const std::string& where) {
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    cudaGetLastError();  // Clears the error so later CUDA calls do not report it again.
    return absl::FailedPreconditionError(
        absl::StrCat(where, "no usable CUDA device: ", cudaGetErrorString(e)));
  }
  if (device_index >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat(where, "this machine has ", count, " CUDA devices"));
  }
  return absl::OkStatus();
}

// Joins the NCCL communicator of `id` on the current device, waiting until `deadline` (`timeout`
// after Create's call, named in the error). Non-blocking initialisation, so that the deadline
// (not NCCL's own bootstrap timeouts) bounds how long a missing peer can hold this rank; on
// failure or timeout the half-built communicator is aborted.
absl::StatusOr<ncclComm_t> InitCommunicator(const ncclUniqueId& id, int rank, int size,
                                            absl::Time deadline, absl::Duration timeout,
                                            const std::string& where) {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t state = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  if (comm != nullptr) state = WaitWhileInProgress(comm, state, deadline);
  if (state == ncclSuccess) return comm;
  if (comm != nullptr) ncclCommAbort(comm);
  if (state == ncclInProgress) {
    return absl::DeadlineExceededError(
        absl::StrCat(where, "NCCL initialisation did not finish within ",
                     absl::FormatDuration(timeout), "; a peer is missing or cannot be reached"));
  }
  return absl::Status(CodeFor(state),
                      absl::StrCat(where, "ncclCommInitRankConfig: ", NcclError(state)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(Store* store, int rank,
                                                                           int size,
                                                                           int device_index,
                                                                           absl::Duration timeout) {
  if (absl::Status s = CheckCreateArguments(store, rank, size, device_index, timeout); !s.ok()) {
    return s;
  }
  const absl::Time deadline = absl::Now() + timeout;
  const std::string where =
      absl::StrCat("nccl rendezvous (rank ", rank, " of ", size, ", cuda:", device_index, "): ");

  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  // Non-zero ranks fetch the id first: it needs no GPU, so the rendezvous errors show up (and are
  // testable) on any machine.
  if (rank != 0) {
    if (absl::Status s = FetchUniqueId(store, kUniqueIdKey, deadline, where, &id); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = CheckDeviceExists(device_index, where); !s.ok()) return s;
  DeviceGuard guard(device_index);
  if (!guard.ok()) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(where, "cannot select the CUDA device"));
  }
  if (rank == 0) {
    if (absl::Status s = MakeUniqueId(store, kUniqueIdKey, size, where, &id); !s.ok()) return s;
  }

  cudaEvent_t done = nullptr;
  if (cudaError_t e = cudaEventCreateWithFlags(&done, cudaEventDisableTiming); e != cudaSuccess) {
    return absl::InternalError(absl::StrCat(where, "cudaEventCreate: ", cudaGetErrorString(e)));
  }
  absl::StatusOr<ncclComm_t> comm = InitCommunicator(id, rank, size, deadline, timeout, where);
  if (!comm.ok()) {
    cudaEventDestroy(done);
    return comm.status();
  }
  return std::unique_ptr<NcclCommunicator>(
      new NcclCommunicator(rank, size, device_index, timeout, *comm, done));
}

NcclCommunicator::NcclCommunicator(int rank, int size, int device_index, absl::Duration timeout,
                                   ncclComm* comm, CUevent_st* done)
    : rank_(rank),
      size_(size),
      device_index_(device_index),
      timeout_(timeout),
      comm_(comm),
      done_(done) {}

NcclCommunicator::~NcclCommunicator() {
  std::lock_guard<std::timed_mutex> lock(op_mu_);
  DeviceGuard guard(device_index_);
  if (comm_ != nullptr) {
    if (aborted()) {
      ncclCommAbort(comm_);
    } else {
      // Finalize flushes outstanding work; bounded, because a peer that died after the last
      // collective must not hang the destructor.
      ncclResult_t state = ncclCommFinalize(comm_);
      state = WaitWhileInProgress(comm_, state, absl::Now() + std::min(timeout_, kMaxFinalizeWait));
      if (state == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    }
    comm_ = nullptr;
  }
  if (done_ != nullptr) cudaEventDestroy(done_);
  if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
}

absl::Status NcclCommunicator::CheckTensor(const torch::Tensor& tensor, const char* op,
                                           bool need_float) const {
  if (tensor.defined() && tensor.is_cuda() && tensor.get_device() == device_index_ &&
      tensor.is_contiguous() && (!need_float || tensor.scalar_type() == torch::kFloat32)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("nccl ", op, " needs a contiguous ", need_float ? "float32 " : "",
                   "tensor on cuda:", device_index_, ", got ", DescribeTensor(tensor)));
}

absl::Status NcclCommunicator::AllReduceSum(torch::Tensor& tensor) {
  return AllReduce(tensor, /*average=*/false);
}

bool NcclCommunicator::AveragesBfloat16() {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 20, 0)
  return true;
#else
  return false;
#endif
}

absl::Status NcclCommunicator::AllReduceAverage(torch::Tensor& tensor) {
  return AllReduce(tensor, /*average=*/true);
}

absl::Status NcclCommunicator::AllReduce(torch::Tensor& tensor, bool average) {
  std::lock_guard<std::timed_mutex> lock(op_mu_);
  if (absl::Status s = CheckNotAbortedLocked(); !s.ok()) return s;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 20, 0)
  // Averages also take bfloat16 (a Local SGD sync in bf16), where this NCCL has the type.
  const bool bf16 = average && tensor.defined() && tensor.scalar_type() == torch::kBFloat16;
#else
  const bool bf16 = false;
#endif
  if (!bf16) {
    if (absl::Status s = CheckTensor(tensor, "all-reduce", /*need_float=*/true); !s.ok()) {
      return s;
    }
  } else if (absl::Status s = CheckTensor(tensor, "all-reduce", /*need_float=*/false); !s.ok()) {
    return s;
  }
  const int64_t numel = tensor.numel();
  if (numel == 0) return absl::OkStatus();
  DeviceGuard guard(device_index_);
  absl::StatusOr<cudaStream_t> stream = ComputeStream(device_index_, "all-reduce");
  if (!stream.ok()) return stream.status();
  void* data = tensor.data_ptr();
  ncclDataType_t type = ncclFloat32;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 20, 0)
  if (bf16) type = ncclBfloat16;
#endif
    // ncclAvg (NCCL >= 2.10) divides inside the kernel; older NCCLs sum, and the division follows
    // on the same stream.
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 10, 0)
  const ncclRedOp_t op = average ? ncclAvg : ncclSum;
  const bool divide_after = false;
#else
  const ncclRedOp_t op = ncclSum;
  const bool divide_after = average;
#endif
  ncclResult_t r = ncclAllReduce(data, data, static_cast<size_t>(numel), type, op, comm_, *stream);
  if (absl::Status s = Complete("all-reduce", r, *stream); !s.ok()) return s;
  if (divide_after && size_ > 1) tensor.div_(static_cast<double>(size_));
  bytes_sent_ += RingAllReduceBytesSent(numel * tensor.element_size(), size_);
  return absl::OkStatus();
}

absl::Status NcclCommunicator::Broadcast(torch::Tensor& tensor, int root) {
  std::lock_guard<std::timed_mutex> lock(op_mu_);
  if (absl::Status s = CheckNotAbortedLocked(); !s.ok()) return s;
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl broadcast: root ", root, " outside [0, ", size_, ")"));
  }
  if (absl::Status s = CheckTensor(tensor, "broadcast", /*need_float=*/false); !s.ok()) return s;
  const int64_t nbytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
  if (nbytes == 0) return absl::OkStatus();
  DeviceGuard guard(device_index_);
  absl::StatusOr<cudaStream_t> stream = ComputeStream(device_index_, "broadcast");
  if (!stream.ok()) return stream.status();
  void* data = tensor.data_ptr();
  ncclResult_t r =
      ncclBroadcast(data, data, static_cast<size_t>(nbytes), ncclUint8, root, comm_, *stream);
  if (absl::Status s = Complete("broadcast", r, *stream); !s.ok()) return s;
  bytes_sent_ += BroadcastBytesSent(nbytes, rank_, root, size_);
  return absl::OkStatus();
}

absl::Status NcclCommunicator::Complete(const char* op, int result, CUstream_st* stream) {
  const absl::Time deadline = absl::Now() + timeout_;
  if (absl::Status s = Enqueued(op, result, deadline); !s.ok()) return s;
  if (cudaError_t e = cudaEventRecord(done_, stream); e != cudaSuccess) {
    return Fail(absl::StatusCode::kInternal, op,
                absl::StrCat("cudaEventRecord: ", cudaGetErrorString(e)));
  }
  return AwaitEvent(op, done_, deadline);
}

absl::Status NcclCommunicator::Enqueued(const char* op, int result, absl::Time deadline) {
  // A non-blocking communicator may return before the operation is enqueued; an event must be
  // recorded after the NCCL kernel is on the stream.
  ncclResult_t state = static_cast<ncclResult_t>(result);
  Backoff backoff;
  while (state == ncclInProgress) {
    if (absl::Status s = CheckNotAbortedLocked(); !s.ok()) return s;
    if (absl::Now() >= deadline) {
      return Fail(absl::StatusCode::kDeadlineExceeded, op,
                  absl::StrCat("was not enqueued within ", absl::FormatDuration(timeout_),
                               "; a peer is likely dead or stuck"));
    }
    backoff.Wait();
    ncclResult_t query = ncclCommGetAsyncError(comm_, &state);
    if (query != ncclSuccess) state = query;
  }
  if (state != ncclSuccess) return Fail(CodeFor(state), op, NcclError(state));
  return absl::OkStatus();
}

absl::Status NcclCommunicator::AwaitEvent(const char* op, CUevent_st* event, absl::Time deadline) {
  // Wait for the kernel, watching for NCCL's asynchronous errors (a peer that vanished) and for
  // the deadline (a peer that hangs): a kernel waiting on a dead peer never finishes by itself;
  // ncclCommAbort makes it exit.
  Backoff backoff;
  while (true) {
    const cudaError_t e = cudaEventQuery(event);
    if (e == cudaSuccess) return absl::OkStatus();
    if (e != cudaErrorNotReady) {
      return Fail(absl::StatusCode::kInternal, op,
                  absl::StrCat("CUDA error while waiting: ", cudaGetErrorString(e)));
    }
    if (absl::Status s = CheckNotAbortedLocked(); !s.ok()) return s;
    ncclResult_t async = ncclSuccess;
    if (ncclResult_t query = ncclCommGetAsyncError(comm_, &async); query != ncclSuccess) {
      async = query;
    }
    if (async != ncclSuccess && async != ncclInProgress) {
      return Fail(CodeFor(async), op, NcclError(async));
    }
    if (absl::Now() >= deadline) {
      return Fail(absl::StatusCode::kDeadlineExceeded, op,
                  absl::StrCat("did not complete within ", absl::FormatDuration(timeout_),
                               "; a peer is likely dead or stuck"));
    }
    backoff.Wait();
  }
}

// A started all-reduce: the event recorded after it on the communication stream.
class NcclCommunicator::Pending : public PendingCollective {
 public:
  Pending(NcclCommunicator* comm, CUevent_st* event, int64_t bytes)
      : comm_(comm), event_(event), bytes_(bytes) {}
  ~Pending() override {
    if (event_ != nullptr) comm_->DestroyEvent(event_);
  }

  absl::Status Wait() override {
    if (event_ == nullptr) return status_;
    status_ = comm_->WaitStarted(event_, bytes_);
    comm_->DestroyEvent(event_);
    event_ = nullptr;
    return status_;
  }

 private:
  NcclCommunicator* const comm_;
  CUevent_st* event_;  // null once waited for, or for an empty tensor
  const int64_t bytes_;
  absl::Status status_;
};

absl::StatusOr<std::unique_ptr<PendingCollective>> NcclCommunicator::StartAllReduceSum(
    torch::Tensor tensor) {
  std::lock_guard<std::timed_mutex> lock(op_mu_);
  if (absl::Status s = CheckNotAbortedLocked(); !s.ok()) return s;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 20, 0)
  // bfloat16 too (an overlapped bf16 sync), where this NCCL has the type.
  const bool bf16 = tensor.defined() && tensor.scalar_type() == torch::kBFloat16;
#else
  const bool bf16 = false;
#endif
  if (absl::Status s = CheckTensor(tensor, "all-reduce", /*need_float=*/!bf16); !s.ok()) return s;
  const int64_t numel = tensor.numel();
  if (numel == 0) return std::unique_ptr<PendingCollective>(new Pending(this, nullptr, 0));
  ncclDataType_t type = ncclFloat32;
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 20, 0)
  if (bf16) type = ncclBfloat16;
#endif
  const char* op = "asynchronous all-reduce";
  DeviceGuard guard(device_index_);
  absl::StatusOr<cudaStream_t> compute = ComputeStream(device_index_, "all-reduce");
  if (!compute.ok()) return compute.status();
  if (comm_stream_ == nullptr) {
    cudaStream_t stream = nullptr;
    if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        e != cudaSuccess) {
      return Fail(absl::StatusCode::kInternal, op,
                  absl::StrCat("cudaStreamCreate: ", cudaGetErrorString(e)));
    }
    comm_stream_ = stream;
  }
  // The collective must see what the compute stream wrote into `tensor` (the gradients copied
  // in by backward), so the communication stream waits for the compute stream's work so far.
  cudaEvent_t ready = nullptr;
  cudaEvent_t done = nullptr;
  if (cudaError_t e = cudaEventCreateWithFlags(&ready, cudaEventDisableTiming); e != cudaSuccess) {
    return Fail(absl::StatusCode::kInternal, op,
                absl::StrCat("cudaEventCreate: ", cudaGetErrorString(e)));
  }
  cudaError_t e = cudaEventRecord(ready, *compute);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(comm_stream_, ready, 0);
  cudaEventDestroy(ready);  // Released once the recorded work completes.
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
  if (e != cudaSuccess) {
    return Fail(absl::StatusCode::kInternal, op,
                absl::StrCat("ordering after the compute stream: ", cudaGetErrorString(e)));
  }
  void* data = tensor.data_ptr();
  ncclResult_t r =
      ncclAllReduce(data, data, static_cast<size_t>(numel), type, ncclSum, comm_, comm_stream_);
  absl::Status s = Enqueued(op, r, absl::Now() + timeout_);
  if (s.ok()) {
    if (cudaError_t re = cudaEventRecord(done, comm_stream_); re != cudaSuccess) {
      s = Fail(absl::StatusCode::kInternal, op,
               absl::StrCat("cudaEventRecord: ", cudaGetErrorString(re)));
    }
  }
  if (!s.ok()) {
    cudaEventDestroy(done);
    return s;
  }
  return std::unique_ptr<PendingCollective>(
      new Pending(this, done, numel * static_cast<int64_t>(tensor.element_size())));
}

absl::Status NcclCommunicator::WaitStarted(CUevent_st* event, int64_t bytes) {
  std::lock_guard<std::timed_mutex> lock(op_mu_);
  if (absl::Status s = CheckNotAbortedLocked(); !s.ok()) return s;
  DeviceGuard guard(device_index_);
  absl::Status s = AwaitEvent("asynchronous all-reduce", event, absl::Now() + timeout_);
  if (s.ok()) bytes_sent_ += RingAllReduceBytesSent(bytes, size_);
  return s;
}

void NcclCommunicator::DestroyEvent(CUevent_st* event) {
  DeviceGuard guard(device_index_);
  cudaEventDestroy(event);
}

absl::Status NcclCommunicator::Fail(absl::StatusCode code, const char* op,
                                    const std::string& what) {
  // A concurrent Abort() makes the in-flight collective stop; report the abort, not its echo.
  if (absl::Status s = CheckNotAbortedLocked(); !s.ok()) return s;
  const std::string reason = absl::StrCat("nccl ", op, " failed on rank ", rank_, " of ", size_,
                                          " (cuda:", device_index_, "): ", what);
  abort_.Set(reason);
  AbortNcclLocked();
  return absl::Status(code, reason);
}

absl::Status NcclCommunicator::CheckNotAbortedLocked() {
  if (!aborted()) return absl::OkStatus();
  AbortNcclLocked();
  return AbortedStatus();
}

void NcclCommunicator::Abort(const std::string& reason) {
  if (!abort_.Set(reason)) return;
  // Abort NCCL now if no collective is running. A running collective polls aborted() at least
  // every millisecond and aborts NCCL itself; the bounded wait keeps Abort() from ever hanging on
  // it, and the destructor aborts in any case.
  if (op_mu_.try_lock_for(std::chrono::milliseconds(100))) {
    std::lock_guard<std::timed_mutex> lock(op_mu_, std::adopt_lock);
    AbortNcclLocked();
  }
}

void NcclCommunicator::AbortNcclLocked() {
  if (comm_ == nullptr) return;
  DeviceGuard guard(device_index_);
  ncclCommAbort(comm_);
  comm_ = nullptr;
}

std::string NcclCommunicator::abort_reason() const { return abort_.reason(); }

absl::Status NcclCommunicator::AbortedStatus() const {
  return abort_.AbortedStatus("nccl", rank_, size_);
}

int64_t NcclCommunicator::RingAllReduceBytesSent(int64_t total_bytes, int size) {
  if (size <= 1 || total_bytes <= 0) return 0;
  return 2 * (size - 1) * total_bytes / size;
}

int64_t NcclCommunicator::BroadcastBytesSent(int64_t total_bytes, int rank, int root, int size) {
  if (size <= 1 || total_bytes <= 0) return 0;
  const int last = (root + size - 1) % size;
  return rank == last ? 0 : total_bytes;
}

}  // namespace qsr
