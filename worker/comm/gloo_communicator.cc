#include "worker/comm/gloo_communicator.h"

#include <c10/util/BFloat16.h>
#include <gloo/allreduce.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "worker/comm/collective_fault_hook.h"
#include "worker/comm/gloo_store.h"

namespace qsr {
namespace {

// Gloo's segment bound for the ring all-reduce (AllreduceOptions::kMaxSegmentSize).
constexpr int64_t kMaxSegmentBytes = 1024 * 1024;

// Element-wise float sum for gloo::allreduce: c[i] = a[i] + b[i]. Gloo's ring reduces into its
// output (c == a) from a separate receive buffer (b), which the first loop tells the compiler.
void SumFloats(void* c, const void* a, const void* b, size_t n) {
  float* out = static_cast<float*>(c);
  const float* x = static_cast<const float*>(a);
  const float* __restrict__ y = static_cast<const float*>(b);
  if (out == x) {
    float* __restrict__ inout = out;
    for (size_t i = 0; i < n; ++i) inout[i] += y[i];
    return;
  }
  for (size_t i = 0; i < n; ++i) out[i] = x[i] + y[i];
}

// bfloat16 as stored, converted the way c10::BFloat16 does (round to nearest even), so that the
// collective rounds exactly like a torch bfloat16 tensor operation would.
float Bf16ToFloat(uint16_t h) {
  return static_cast<float>(c10::BFloat16(h, c10::BFloat16::from_bits()));
}

uint16_t FloatToBf16(float f) { return c10::BFloat16(f).x; }

// SumFloats for bfloat16 elements: each sum is formed in float32 and rounded once.
void SumBf16(void* c, const void* a, const void* b, size_t n) {
  uint16_t* out = static_cast<uint16_t*>(c);
  const uint16_t* x = static_cast<const uint16_t*>(a);
  const uint16_t* y = static_cast<const uint16_t*>(b);
  for (size_t i = 0; i < n; ++i) out[i] = FloatToBf16(Bf16ToFloat(x[i]) + Bf16ToFloat(y[i]));
}

void SumAndDivideBf16(uint16_t* c, const uint16_t* a, const uint16_t* b, size_t n, float divisor) {
  for (size_t i = 0; i < n; ++i) {
    c[i] = FloatToBf16((Bf16ToFloat(a[i]) + Bf16ToFloat(b[i])) / divisor);
  }
}

// c[i] = (a[i] + b[i]) / divisor, the last reduction of an averaging ring all-reduce.
void SumAndDivideFloats(float* c, const float* a, const float* b, size_t n, float divisor) {
  const float* __restrict__ y = b;
  if (c == a) {
    float* __restrict__ inout = c;
    for (size_t i = 0; i < n; ++i) inout[i] = (inout[i] + y[i]) / divisor;
    return;
  }
  for (size_t i = 0; i < n; ++i) c[i] = (a[i] + y[i]) / divisor;
}

// Slot prefix of the never-matched receive that SignalConnections() times out on; Gloo's
// collectives use prefixes 0x01-0x08.
constexpr uint8_t kAbortSlotPrefix = 0x7f;

void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current = {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
  });
}

std::chrono::milliseconds ToMillis(absl::Duration d) {
  return std::chrono::milliseconds(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

bool LooksLikeTimeout(const std::string& what) {
  const std::string lower = absl::AsciiStrToLower(what);
  return absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout");
}

int64_t RoundUp(int64_t value, int64_t multiple) {
  const int64_t remainder = value % multiple;
  return remainder == 0 ? value : value + multiple - remainder;
}

// How gloo::allreduce's ring (gloo/allreduce.cc) cuts a buffer: `num_segments` segments of
// `segment` bytes (the last ones may reach past the end, or lie wholly past it), `per_rank`
// consecutive segments per chunk, chunk r for rank r. The count comes first (segments of at most
// 1 MiB, at least two per rank, a multiple of the ranks), then the segment size (the buffer split
// evenly among them, rounded up to whole elements). That is Debian's libgloo 0.0~git20220518;
// later Gloo sizes the segments first. Create() probes it on every communicator (ProbeRing), so a
// Gloo that cuts differently averages with a separate division instead of failing the run, and
// GlooCommunicatorTest.FusedAveragingIsVerifiedOnThisGloo fails there instead.
struct RingLayout {
  int64_t segment;
  int64_t num_segments;
  int64_t per_rank;
};

RingLayout GlooRingLayout(int64_t total_bytes, int size, int64_t element_size,
                          int64_t max_segment_bytes = kMaxSegmentBytes) {
  const int64_t n = size;
  const int64_t max_segment = element_size * (max_segment_bytes / element_size);
  RingLayout layout;
  layout.num_segments = RoundUp(std::max((total_bytes + max_segment - 1) / max_segment, n * 2), n);
  layout.segment =
      RoundUp((total_bytes + layout.num_segments - 1) / layout.num_segments, element_size);
  layout.per_rank = layout.num_segments / n;
  return layout;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Create(
    Store* store, int rank, int size, const GlooOptions& options) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("gloo: size ", size, " < 1"));
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo: rank ", rank, " outside [0, ", size, ")"));
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("gloo: timeout must be positive, got ",
                                                   absl::FormatDuration(options.timeout)));
  }
  if (size == 1) {
    return std::unique_ptr<GlooCommunicator>(
        new GlooCommunicator(rank, size, options.timeout, nullptr));
  }
  if (store == nullptr) return absl::InvalidArgumentError("gloo: store is null");
  if (options.hostname.empty()) return absl::InvalidArgumentError("gloo: hostname is empty");
  IgnoreSigpipeOnce();

  const std::string where =
      absl::StrCat("gloo rendezvous (rank ", rank, " of ", size, ", ", options.hostname, "): ");
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
    context->setTimeout(ToMillis(options.timeout));
    // Every store wait is capped by one deadline for the whole rendezvous, so a late or missing
    // peer costs at most about `timeout` in total.
    GlooStore gloo_store(store, options.timeout, absl::Now() + options.timeout);
    context->connectFullMesh(gloo_store, device);
    std::unique_ptr<GlooCommunicator> comm(
        new GlooCommunicator(rank, size, options.timeout, std::move(context)));
    if (options.fused_average) {
      std::lock_guard<std::mutex> lock(comm->op_mu_);
      comm->fused_average_ = comm->ProbeRing();
      if (!comm->fused_average_ && rank == 0) {
        LOG(WARNING) << "gloo: this Gloo build cuts the ring all-reduce differently from "
                        "Debian's libgloo 0.0~git20220518; averaging divides in a pass of "
                        "its own";
      }
    }
    return comm;
  } catch (const GlooStoreError& e) {
    const absl::Status& s = e.status();
    return absl::Status(s.code(), where + std::string(s.message()));
  } catch (const std::exception& e) {
    const std::string what = e.what();
    if (LooksLikeTimeout(what)) return absl::DeadlineExceededError(where + what);
    return absl::UnavailableError(where + what);
  } catch (...) {
    return absl::UnavailableError(where + "unknown exception");
  }
}

GlooCommunicator::GlooCommunicator(int rank, int size, absl::Duration timeout,
                                   std::shared_ptr<gloo::Context> context)
    : rank_(rank), size_(size), timeout_(timeout), context_(std::move(context)) {}

GlooCommunicator::~GlooCommunicator() {
  bool pending = false;
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    async_stopping_ = true;
    pending = async_busy_ || !queue_.empty();
  }
  // Queued collectives would each wait for peers that may never come; fail them fast instead.
  if (pending) Abort("communicator destroyed with asynchronous collectives pending");
  async_cv_.notify_all();
  if (async_thread_.joinable()) async_thread_.join();
}

// A queued all-reduce, shared by the collective thread and the caller's handle.
struct GlooCommunicator::AsyncOp {
  torch::Tensor tensor;  // released once done
  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  absl::Time started_at;
  bool done = false;
  absl::Status status;
};

class GlooCommunicator::Pending : public PendingCollective {
 public:
  Pending(GlooCommunicator* comm, std::shared_ptr<AsyncOp> op) : comm_(comm), op_(std::move(op)) {}

  absl::Status Wait() override {
    std::unique_lock<std::mutex> lock(op_->mu);
    // The thread bounds each collective by the timeout; the grace covers scheduling, and the
    // deadline guards against a collective that never returns at all.
    constexpr absl::Duration kGrace = absl::Seconds(5);
    const absl::Time wait_start = absl::Now();
    while (!op_->done) {
      const absl::Time base = op_->started ? std::max(op_->started_at, wait_start) : wait_start;
      const absl::Time deadline = base + comm_->timeout_ + kGrace;
      const absl::Time now = absl::Now();
      if (now >= deadline) {
        lock.unlock();
        const std::string reason = absl::StrCat(
            "gloo asynchronous all-reduce on rank ", comm_->rank_, " of ", comm_->size_,
            " did not complete within ", absl::FormatDuration(comm_->timeout_ + kGrace));
        comm_->Abort(reason);
        return absl::DeadlineExceededError(reason);
      }
      // Re-check at least every 100 ms: the base moves when the collective starts.
      op_->cv.wait_for(
          lock, absl::ToChronoMilliseconds(std::min(deadline - now, absl::Milliseconds(100))));
    }
    return op_->status;
  }

 private:
  GlooCommunicator* const comm_;
  const std::shared_ptr<AsyncOp> op_;
};

absl::Status GlooCommunicator::CheckAllReduceTensor(const torch::Tensor& tensor) {
  if (!tensor.defined() ||
      (tensor.scalar_type() != torch::kFloat32 && tensor.scalar_type() != torch::kBFloat16) ||
      !tensor.device().is_cpu() || !tensor.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo all-reduce needs a contiguous float32 or bfloat16 CPU tensor, got ",
                     DescribeTensor(tensor)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PendingCollective>> GlooCommunicator::StartAllReduceSum(
    torch::Tensor tensor) {
  if (aborted()) return AbortedStatus();
  if (absl::Status s = CheckAllReduceTensor(tensor); !s.ok()) return s;
  auto op = std::make_shared<AsyncOp>();
  if (size_ == 1 || tensor.numel() == 0) {
    op->done = true;
    return std::unique_ptr<PendingCollective>(new Pending(this, std::move(op)));
  }
  op->tensor = std::move(tensor);
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    if (async_stopping_) return AbortedStatus();
    if (!async_thread_.joinable()) async_thread_ = std::thread([this] { AsyncLoop(); });
    queue_.push_back(op);
  }
  async_cv_.notify_one();
  return std::unique_ptr<PendingCollective>(new Pending(this, std::move(op)));
}

void GlooCommunicator::AsyncLoop() {
  while (true) {
    std::shared_ptr<AsyncOp> op;
    {
      std::unique_lock<std::mutex> lock(async_mu_);
      async_busy_ = false;
      async_cv_.wait(lock, [&] { return async_stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to fail
      op = std::move(queue_.front());
      queue_.pop_front();
      async_busy_ = true;
    }
    {
      std::lock_guard<std::mutex> lock(op->mu);
      op->started = true;
      op->started_at = absl::Now();
    }
    absl::Status status = AllReduceSum(op->tensor);
    {
      std::lock_guard<std::mutex> lock(op->mu);
      op->status = std::move(status);
      op->tensor = torch::Tensor();
      op->done = true;
    }
    op->cv.notify_all();
  }
}

absl::Status GlooCommunicator::AllReduceSum(torch::Tensor& tensor) {
  return AllReduce(tensor, /*average=*/false);
}

absl::Status GlooCommunicator::AllReduceAverage(torch::Tensor& tensor) {
  return AllReduce(tensor, /*average=*/true);
}

// Averaging without a pass of its own. In Gloo's ring, chunk r of the buffer travels the ring
// during the reduce-scatter and is reduced for the last time on rank r, which then starts it on
// its way around in the all-gather; every other chunk is reduced at most once on this rank, and
// never after it was complete. So a reduction whose destination lies in this rank's chunk is the
// final one for those elements, and dividing there turns the sum into the mean for 1/n of a pass
// over the tensor, inside a pass that runs anyway; the all-gather then copies the means, so
// ranks still agree bit for bit. The chunk bounds mirror Gloo's segmentation (GlooRingLayout),
// which Create() verified for this communicator (ProbeRing); without that, the sum is divided
// in a pass of its own. Should a tensor still be cut differently from the probe, the count of
// divided elements would not match the chunk, and the collective fails with INTERNAL instead of
// returning wrong values.
int64_t GlooCommunicator::RunRing(char* data, int64_t numel, bool bf16, bool divide_chunk,
                                  int64_t max_segment_bytes, bool kill_in_collective) {
  const int64_t element_size = bf16 ? 2 : 4;
  int64_t chunk_begin = 0;
  int64_t chunk_end = 0;
  if (divide_chunk) {
    const RingLayout layout =
        GlooRingLayout(numel * element_size, size_, element_size, max_segment_bytes);
    const int64_t chunk_bytes = layout.per_rank * layout.segment;
    chunk_begin = std::min(numel, rank_ * chunk_bytes / element_size);
    chunk_end = std::min(numel, (rank_ + 1) * chunk_bytes / element_size);
  }
  int64_t divided = 0;
  gloo::AllreduceOptions opts(context_);
  opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
  if (bf16) {
    opts.setOutput(reinterpret_cast<uint16_t*>(data), static_cast<size_t>(numel));
  } else {
    opts.setOutput(reinterpret_cast<float*>(data), static_cast<size_t>(numel));
  }
  opts.setMaxSegmentSize(max_segment_bytes);
  if (divide_chunk) {
    const float divisor = static_cast<float>(size_);
    opts.setReduceFunction([&](void* c, const void* a, const void* b, size_t n) {
      if (kill_in_collective) CollectiveFaultHook::Fire();
      const int64_t begin = (static_cast<char*>(c) - data) / element_size;
      const int64_t end = begin + static_cast<int64_t>(n);
      if (begin < chunk_begin || end > chunk_end) {
        (bf16 ? SumBf16 : SumFloats)(c, a, b, n);
        return;
      }
      if (bf16) {
        SumAndDivideBf16(static_cast<uint16_t*>(c), static_cast<const uint16_t*>(a),
                         static_cast<const uint16_t*>(b), n, divisor);
      } else {
        SumAndDivideFloats(static_cast<float*>(c), static_cast<const float*>(a),
                           static_cast<const float*>(b), n, divisor);
      }
      divided += static_cast<int64_t>(n);
    });
  } else if (kill_in_collective) {
    opts.setReduceFunction([&](void* c, const void* a, const void* b, size_t n) {
      CollectiveFaultHook::Fire();
      (bf16 ? SumBf16 : SumFloats)(c, a, b, n);
    });
  } else {
    opts.setReduceFunction(bf16 ? &SumBf16 : &SumFloats);
  }
  opts.setTag(next_tag_++);
  opts.setTimeout(ToMillis(timeout_));
  gloo::allreduce(opts);
  return divide_chunk && divided != chunk_end - chunk_begin ? -1 : divided;
}

bool GlooCommunicator::ProbeRing() {
  // Gloo's segment count comes from one of two rules (at least two segments per rank, or
  // segments of at most the bound), so the probe exercises both: a small buffer under the 1 MiB
  // bound, and one cut by a tiny bound into 4n segments of a few dozen bytes, as a model of many
  // megabytes is cut. Both have ragged last chunks. Integer values make the mean exact, so a
  // wrong division shows in the values as well as in the count.
  bool ok = true;
  for (const auto& [numel, max_segment_bytes] :
       {std::pair<int64_t, int64_t>{6 * size_ + 1, kMaxSegmentBytes},
        std::pair<int64_t, int64_t>{24 * size_ + 5, 32}}) {
    std::vector<float> values(numel);
    for (int64_t i = 0; i < numel; ++i) values[i] = static_cast<float>((i % 97) * size_ + rank_);
    const int64_t divided = RunRing(reinterpret_cast<char*>(values.data()), numel,
                                    /*bf16=*/false, /*divide_chunk=*/true, max_segment_bytes,
                                    /*kill_in_collective=*/false);
    ok = ok && divided >= 0;
    const float offset = static_cast<float>(size_ - 1) / 2.0f;
    for (int64_t i = 0; ok && i < numel; ++i) {
      ok = values[i] == static_cast<float>((i % 97) * size_) + offset;
    }
  }
  // Every rank must average the same way, so the verdict is agreed by all.
  float failures = ok ? 0.0f : 1.0f;
  RunRing(reinterpret_cast<char*>(&failures), 1, /*bf16=*/false, /*divide_chunk=*/false,
          kMaxSegmentBytes, /*kill_in_collective=*/false);
  return failures == 0.0f;
}

absl::Status GlooCommunicator::AllReduce(torch::Tensor& tensor, bool average) {
  std::lock_guard<std::mutex> lock(op_mu_);
  if (aborted()) return AbortedStatus();
  if (absl::Status s = CheckAllReduceTensor(tensor); !s.ok()) return s;
  const int64_t numel = tensor.numel();
  if (size_ == 1 || numel == 0) return absl::OkStatus();
  const char* op = average ? "averaging all-reduce" : "all-reduce";
  const bool bf16 = tensor.scalar_type() == torch::kBFloat16;
  const int64_t element_size = bf16 ? 2 : 4;
  const bool fused = average && fused_average_;
  int64_t divided = 0;
  try {
    // Test hook (collective_fault_hook.h): off unless a test armed it for this collective.
    const bool kill_in_collective = average && CollectiveFaultHook::TakeArmed();
    divided = RunRing(static_cast<char*>(tensor.data_ptr()), numel, bf16, fused, kMaxSegmentBytes,
                      kill_in_collective);
  } catch (const std::exception& e) {
    return FailCollective(op, e.what());
  } catch (...) {
    return FailCollective(op, "unknown exception");
  }
  if (divided < 0) {
    const std::string reason = absl::StrCat(
        "gloo averaging all-reduce on rank ", rank_, " of ", size_, " of ", numel,
        " elements: this Gloo build cut the ring differently from the layout its probe showed");
    Abort(reason);
    return absl::InternalError(reason);
  }
  if (average && !fused) tensor.div_(size_);
  bytes_sent_ += RingAllReduceBytesSent(numel * element_size, rank_, size_, element_size);
  return absl::OkStatus();
}

absl::Status GlooCommunicator::Broadcast(torch::Tensor& tensor, int root) {
  std::lock_guard<std::mutex> lock(op_mu_);
  if (aborted()) return AbortedStatus();
  if (root < 0 || root >= size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo broadcast: root ", root, " outside [0, ", size_, ")"));
  }
  if (!tensor.defined() || !tensor.device().is_cpu() || !tensor.is_contiguous()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gloo broadcast needs a contiguous CPU tensor, got ", DescribeTensor(tensor)));
  }
  const int64_t nbytes = tensor.numel() * static_cast<int64_t>(tensor.element_size());
  if (size_ == 1 || nbytes == 0) return absl::OkStatus();
  try {
    gloo::BroadcastOptions opts(context_);
    opts.setOutput(static_cast<uint8_t*>(tensor.data_ptr()), static_cast<size_t>(nbytes));
    opts.setRoot(root);
    opts.setTag(next_tag_++);
    opts.setTimeout(ToMillis(timeout_));
    gloo::broadcast(opts);
  } catch (const std::exception& e) {
    return FailCollective("broadcast", e.what());
  } catch (...) {
    return FailCollective("broadcast", "unknown exception");
  }
  bytes_sent_ += BroadcastBytesSent(nbytes, rank_, root, size_);
  return absl::OkStatus();
}

absl::Status GlooCommunicator::FailCollective(const std::string& op, const std::string& what) {
  // A concurrent Abort() makes the in-flight collective fail; report the abort, not its echo.
  if (aborted()) return AbortedStatus();
  const std::string reason =
      absl::StrCat("gloo ", op, " failed on rank ", rank_, " of ", size_, ": ", what);
  Abort(reason);
  if (LooksLikeTimeout(what)) return absl::DeadlineExceededError(reason);
  return absl::UnavailableError(reason);
}

void GlooCommunicator::Abort(const std::string& reason) {
  if (abort_.Set(reason)) SignalConnections();
}

void GlooCommunicator::SignalConnections() {
  if (context_ == nullptr) return;
  // Gloo's TCP transport reacts to a timed-out wait by failing every pending operation of the
  // context (so a collective blocked in another thread throws now) and closing all its sockets
  // (so peers blocked on this rank fail now too). The API to signal the pairs directly is
  // internal (and its header, gloo/common/memory.h, is missing from Debian's libgloo-dev), so
  // trigger exactly that path: post a receive nobody will match and wait 1 ms for it. Once the
  // first peer's wait has signalled the context, the remaining attempts throw immediately.
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    try {
      char byte = 0;
      std::unique_ptr<gloo::transport::UnboundBuffer> buffer =
          context_->createUnboundBuffer(&byte, sizeof(byte));
      buffer->recv(peer, gloo::Slot::build(kAbortSlotPrefix, 0));
      buffer->waitRecv(std::chrono::milliseconds(1));
    } catch (...) {
      // Expected: the timeout (or an already failed connection) throws.
    }
  }
  try {
    context_->closeConnections();
  } catch (...) {
    // Already closed.
  }
}

bool GlooCommunicator::aborted() const { return abort_.is_set(); }

std::string GlooCommunicator::abort_reason() const { return abort_.reason(); }

absl::Status GlooCommunicator::AbortedStatus() const {
  return abort_.AbortedStatus("gloo", rank_, size_);
}

int64_t GlooCommunicator::RingAllReduceBytesSent(int64_t total_bytes, int rank, int size,
                                                 int64_t element_size) {
  if (size <= 1 || total_bytes <= 0 || element_size <= 0) return 0;
  const RingLayout layout = GlooRingLayout(total_bytes, size, element_size);
  const int64_t segment = layout.segment;
  const int64_t num_segments = layout.num_segments;
  const int64_t per_rank = layout.per_rank;
  const int64_t span = num_segments * segment;
  auto length_at = [&](int64_t offset) {
    return std::max<int64_t>(0, std::min(segment, total_bytes - offset));
  };
  // Each phase (reduce-scatter, then allgather) sends (n-1) chunks of per_rank segments; segments
  // past the end of the buffer are empty.
  int64_t sent = 0;
  for (int64_t i = 0; i < num_segments - per_rank; ++i) {
    sent += length_at((((rank + 1) * per_rank + i) * segment) % span);  // reduce-scatter
    sent += length_at(((rank * per_rank + i) * segment) % span);        // allgather
  }
  return sent;
}

int64_t GlooCommunicator::BroadcastBytesSent(int64_t total_bytes, int rank, int root, int size) {
  if (size <= 1 || total_bytes <= 0) return 0;
  // Mirrors gloo::broadcast's binomial tree (gloo/broadcast.cc).
  const int64_t vsize = size;
  const int64_t vrank = (rank + vsize - root) % vsize;
  int dim = 0;
  while ((int64_t{1} << dim) < vsize) ++dim;
  int64_t mask = (int64_t{1} << dim) - 1;
  int64_t sent = 0;
  for (int i = 0; i < dim; ++i) {
    mask ^= (int64_t{1} << i);
    if ((vrank & mask) != 0) continue;
    const int64_t vpeer = vrank ^ (int64_t{1} << i);
    if (vpeer >= vsize) continue;
    if ((vrank & (int64_t{1} << i)) == 0) sent += total_bytes;
  }
  return sent;
}

}  // namespace qsr
