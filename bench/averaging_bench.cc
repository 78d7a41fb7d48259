// qsr-bench-avg: benchmark 2, the cost of one model-averaging round.
//
// Starts --workers ranks as child processes on this machine (loopback, or --host), which meet
// through a c10d TCPStore served by rank 0, and times, for each --sizes-mb model size:
//   impl=qsr     ModelAverager::Average over a GlooCommunicator: the worker's averaging round
//                (one GlooCommunicator::AllReduceAverage of the flat buffer the model's
//                --tensors tensors live in);
//   impl=comm    GlooCommunicator::AllReduceAverage of one flat tensor of the same bytes (the
//                communicator without the averager);
//   impl=gloo    a raw gloo::allreduce (ring, gloo::sum<float>) of one buffer of the same bytes,
//                on its own Gloo context: the floor qsr's round is compared against;
//   impl=link    every rank sends the same bytes to its ring successor while receiving from its
//                predecessor (what one ring step does, at full size): the link bandwidth B,
//                from which the ring all-reduce bound 2(n-1)/n * S / B follows.
// Each measurement is preceded by a barrier. The implementations take turns, one repetition
// each (qsr, comm, gloo, link, qsr, ...), so that a machine that speeds up or slows down during
// the run weighs on all of them alike. Rank 0 reports the median (and min, max) of --iters timed
// repetitions after --warmup untimed ones, as one JSON line per (impl, size):
//   {"bench":"averaging","impl":...,"workers":n,"bytes":S,"iters":k,"median_s":...,"min_s":...,
//    "max_s":...,"algbw_MBps":S/median,"busbw_MBps":2(n-1)/n*S/median}
// (impl=link reports "link_MBps" and "ring_bound_s" instead of bus bandwidth.)
//
// Every rank and every wait is bounded: the parent kills the ranks after --timeout-s.
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <signal.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "rendezvous/store.h"
#include "worker/comm/c10d_store.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/gloo_store.h"
#include "worker/comm/model_averager.h"

namespace qsr {
namespace {

struct Config {
  int workers = 2;
  std::vector<double> sizes_mb;
  int iters = 10;
  int warmup = 2;
  int tensors = 16;
  std::string host = "127.0.0.1";
  int timeout_s = 300;
  std::vector<std::string> impls;
};

using Clock = std::chrono::steady_clock;

struct Stats {
  double median, min, max;
};

Stats Summarise(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return {median, v.front(), v.back()};
}

// One implementation under test: `op` is one repetition; `seconds` collects the timed ones.
struct Timed {
  std::string impl;
  std::function<void()> op;
  std::vector<double> seconds;
};

// Runs --warmup + --iters rounds; each round runs every op once, after a barrier over `context`.
void TimeInTurns(const Config& c, const std::shared_ptr<gloo::Context>& context,
                 std::vector<Timed>& ops) {
  for (int i = 0; i < c.warmup + c.iters; ++i) {
    for (Timed& t : ops) {
      gloo::BarrierOptions barrier(context);
      gloo::barrier(barrier);
      const auto start = Clock::now();
      t.op();
      const double s = std::chrono::duration<double>(Clock::now() - start).count();
      if (i >= c.warmup) t.seconds.push_back(s);
    }
  }
}

std::shared_ptr<gloo::Context> Connect(Store* store, int rank, const Config& c) {
  gloo::transport::tcp::attr attr;
  attr.hostname = c.host;
  auto device = gloo::transport::tcp::CreateDevice(attr);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, c.workers);
  context->setTimeout(std::chrono::seconds(c.timeout_s));
  GlooStore gloo_store(store, absl::Seconds(c.timeout_s));
  context->connectFullMesh(gloo_store, device);
  return context;
}

bool Wants(const Config& c, const std::string& impl) {
  return std::find(c.impls.begin(), c.impls.end(), impl) != c.impls.end();
}

void Print(const Config& c, const std::string& impl, int64_t bytes, const Stats& s) {
  const double n = c.workers;
  const double bus = 2.0 * (n - 1) / n * static_cast<double>(bytes);
  std::cout << absl::StrFormat(
                   "{\"bench\":\"averaging\",\"impl\":\"%s\",\"workers\":%d,\"bytes\":%d,"
                   "\"iters\":%d,\"median_s\":%.6g,\"min_s\":%.6g,\"max_s\":%.6g,"
                   "\"algbw_MBps\":%.4g,\"busbw_MBps\":%.4g}",
                   impl, c.workers, bytes, c.iters, s.median, s.min, s.max,
                   static_cast<double>(bytes) / s.median / 1e6, bus / s.median / 1e6)
            << std::endl;
}

// One rank's whole benchmark. Returns the process exit status.
// Rank 0 passes the store it serves; the others connect to `port`.
int RunRank(int rank, int port, std::unique_ptr<Store> store, const Config& c) {
  if (store == nullptr) {
    absl::StatusOr<std::unique_ptr<C10dStore>> s =
        C10dStore::Connect(c.host, port, absl::Now() + absl::Seconds(c.timeout_s));
    if (!s.ok()) {
      std::cerr << "qsr-bench-avg: rank " << rank << ": " << s.status() << "\n";
      return 1;
    }
    store = std::move(*s);
  }
  PrefixStore qsr_store("qsr", store.get());
  PrefixStore raw_store("raw", store.get());
  GlooOptions options;
  options.hostname = c.host;
  options.timeout = absl::Seconds(c.timeout_s);
  absl::StatusOr<std::unique_ptr<GlooCommunicator>> comm =
      GlooCommunicator::Create(&qsr_store, rank, c.workers, options);
  if (!comm.ok()) {
    std::cerr << "qsr-bench-avg: rank " << rank << ": " << comm.status() << "\n";
    return 1;
  }
  std::shared_ptr<gloo::Context> raw = Connect(&raw_store, rank, c);
  torch::set_num_threads(1);

  for (double mb : c.sizes_mb) {
    const int64_t numel = std::max<int64_t>(c.tensors, static_cast<int64_t>(mb * 1e6 / 4));
    const int64_t bytes = numel * 4;
    std::vector<Timed> ops;
    // A "model" of --tensors tensors of about equal size, like a network's layers.
    std::vector<torch::Tensor> tensors;
    std::optional<ModelAverager> averager;
    absl::Status qsr_status;
    if (Wants(c, "qsr")) {
      int64_t left = numel;
      for (int t = 0; t < c.tensors; ++t) {
        const int64_t n = t + 1 == c.tensors ? left : numel / c.tensors;
        tensors.push_back(torch::full({n}, static_cast<float>(rank + 1)));
        left -= n;
      }
      absl::StatusOr<ModelAverager> created = ModelAverager::Create(tensors);
      if (!created.ok()) {
        std::cerr << "qsr-bench-avg: " << created.status() << "\n";
        return 1;
      }
      averager.emplace(std::move(*created));
      ops.push_back({"qsr",
                     [&] {
                       if (qsr_status.ok()) qsr_status = averager->Average(**comm);
                     },
                     {}});
    }
    torch::Tensor flat;
    absl::Status comm_status;
    if (Wants(c, "comm")) {
      flat = torch::ones({numel});
      ops.push_back({"comm",
                     [&] {
                       if (comm_status.ok()) comm_status = (*comm)->AllReduceAverage(flat);
                     },
                     {}});
    }
    std::vector<float> buffer;
    uint32_t gloo_tag = 0;
    if (Wants(c, "gloo")) {
      buffer.assign(numel, 1.0f);
      ops.push_back(
          {"gloo",
           [&] {
             gloo::AllreduceOptions opts(raw);
             opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
             opts.setOutput(buffer.data(), buffer.size());
             opts.setReduceFunction(
                 static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
             opts.setTag(gloo_tag++);
             gloo::allreduce(opts);
           },
           {}});
    }
    std::vector<char> link_out, link_in;
    std::unique_ptr<gloo::transport::UnboundBuffer> send, recv;
    uint64_t slot = 1000;
    if (Wants(c, "link") && c.workers > 1) {
      link_out.assign(bytes, 1);
      link_in.assign(bytes, 0);
      send = raw->createUnboundBuffer(link_out.data(), link_out.size());
      recv = raw->createUnboundBuffer(link_in.data(), link_in.size());
      const int next = (rank + 1) % c.workers, prev = (rank + c.workers - 1) % c.workers;
      ops.push_back({"link",
                     [&, next, prev] {
                       recv->recv(prev, slot);
                       send->send(next, slot);
                       ++slot;
                       recv->waitRecv(std::chrono::seconds(c.timeout_s));
                       send->waitSend(std::chrono::seconds(c.timeout_s));
                     },
                     {}});
    }
    TimeInTurns(c, raw, ops);
    for (const absl::Status& status : {qsr_status, comm_status}) {
      if (!status.ok()) {
        std::cerr << "qsr-bench-avg: rank " << rank << ": " << status << "\n";
        return 1;
      }
    }
    if (averager.has_value()) {
      // Every rank started at rank+1, so the mean is (n+1)/2 (repeated averaging keeps it).
      const float want = (c.workers + 1) / 2.0f;
      if (std::abs(tensors.back()[0].item<float>() - want) > 1e-3) {
        std::cerr << "qsr-bench-avg: wrong average " << tensors.back()[0].item<float>() << "\n";
        return 1;
      }
    }
    if (rank != 0) continue;
    for (const Timed& t : ops) {
      const Stats st = Summarise(t.seconds);
      if (t.impl != "link") {
        Print(c, t.impl, bytes, st);
        continue;
      }
      const double link = static_cast<double>(bytes) / st.median;
      const double bound = 2.0 * (c.workers - 1) / c.workers * bytes / link;
      std::cout << absl::StrFormat(
                       "{\"bench\":\"averaging\",\"impl\":\"link\",\"workers\":%d,\"bytes\":%d,"
                       "\"iters\":%d,\"median_s\":%.6g,\"min_s\":%.6g,\"max_s\":%.6g,"
                       "\"link_MBps\":%.4g,\"ring_bound_s\":%.6g}",
                       c.workers, bytes, c.iters, st.median, st.min, st.max, link / 1e6, bound)
                << std::endl;
    }
  }
  // Keep rank 0's store up until everyone is done with it.
  gloo::BarrierOptions barrier(raw);
  gloo::barrier(barrier);
  return 0;
}

int Main(int argc, char** argv) {
  FlagParser flags("qsr-bench-avg",
                   "qsr-bench-avg [--workers 2] [--sizes-mb 1,10,100] [--iters 10] "
                   "[--impls qsr,comm,gloo,link]\n"
                   "Times one model-averaging round against a raw Gloo all-reduce of the same "
                   "bytes; prints JSON lines.");
  flags.Add("workers", "2", "ranks (child processes), >= 2");
  flags.Add("sizes-mb", "1,10,100", "model sizes in MB (1e6 bytes), comma-separated");
  flags.Add("iters", "10", "timed repetitions per size");
  flags.Add("warmup", "2", "untimed repetitions first");
  flags.Add("tensors", "16", "tensors the model is split into (impl=qsr)");
  flags.Add("impls", "qsr,comm,gloo,link", "which of qsr, comm, gloo, link to run");
  flags.Add("host", "127.0.0.1", "address the ranks bind and meet on");
  flags.Add("timeout-s", "300", "bound on the whole benchmark");
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  Config c;
  absl::StatusOr<int64_t> workers = flags.GetInt("workers"), iters = flags.GetInt("iters"),
                          warmup = flags.GetInt("warmup"), tensors = flags.GetInt("tensors"),
                          timeout = flags.GetInt("timeout-s");
  if (!workers.ok() || !iters.ok() || !warmup.ok() || !tensors.ok() || !timeout.ok() ||
      *workers < 2 || *workers > 64 || *iters < 1 || *warmup < 0 || *tensors < 1 || *timeout < 1) {
    std::cerr << "qsr-bench-avg: --workers must be in [2, 64], --iters, --tensors and "
                 "--timeout-s >= 1, --warmup >= 0\n";
    return 2;
  }
  c.workers = static_cast<int>(*workers);
  c.iters = static_cast<int>(*iters);
  c.warmup = static_cast<int>(*warmup);
  c.tensors = static_cast<int>(*tensors);
  c.timeout_s = static_cast<int>(*timeout);
  c.host = flags.Get("host");
  for (absl::string_view part : absl::StrSplit(flags.Get("sizes-mb"), ',', absl::SkipEmpty())) {
    double mb = 0;
    if (!absl::SimpleAtod(part, &mb) || mb <= 0 || mb > 4096) {
      std::cerr << "qsr-bench-avg: --sizes-mb: \"" << part << "\" is not a size in (0, 4096]\n";
      return 2;
    }
    c.sizes_mb.push_back(mb);
  }
  for (absl::string_view part : absl::StrSplit(flags.Get("impls"), ',', absl::SkipEmpty())) {
    if (part != "qsr" && part != "comm" && part != "gloo" && part != "link") {
      std::cerr << "qsr-bench-avg: --impls: unknown \"" << part << "\" (qsr, comm, gloo, link)\n";
      return 2;
    }
    c.impls.emplace_back(part);
  }
  if (c.sizes_mb.empty() || c.impls.empty()) {
    std::cerr << "qsr-bench-avg: --sizes-mb and --impls must not be empty\n";
    return 2;
  }

  // Rank 0 picks the store's port and tells the parent through a pipe; the other ranks are
  // forked once it is known. The parent starts no threads of its own before forking.
  int fds[2];
  if (pipe(fds) != 0) {
    perror("qsr-bench-avg: pipe");
    return 1;
  }
  std::vector<pid_t> pids;
  pid_t pid0 = fork();
  if (pid0 == 0) {
    close(fds[0]);
    // Serve first, then report the port, then run.
    int rc = 1;
    try {
      absl::StatusOr<std::unique_ptr<C10dStore>> served = C10dStore::Serve(c.host, 0);
      if (!served.ok()) {
        std::cerr << "qsr-bench-avg: " << served.status() << "\n";
        _exit(1);
      }
      const int port = (*served)->port();
      if (write(fds[1], &port, sizeof(port)) != sizeof(port)) _exit(1);
      close(fds[1]);
      rc = RunRank(0, port, std::move(*served), c);
    } catch (const std::exception& e) {
      std::cerr << "qsr-bench-avg: rank 0: " << e.what() << "\n";
    }
    std::cout.flush();
    _exit(rc);
  }
  pids.push_back(pid0);
  close(fds[1]);
  int port = 0;
  if (read(fds[0], &port, sizeof(port)) != sizeof(port)) {
    std::cerr << "qsr-bench-avg: rank 0 did not start\n";
    kill(pid0, SIGKILL);
    waitpid(pid0, nullptr, 0);
    return 1;
  }
  close(fds[0]);
  for (int rank = 1; rank < c.workers; ++rank) {
    pid_t pid = fork();
    if (pid == 0) {
      int rc = 1;
      try {
        rc = RunRank(rank, port, nullptr, c);
      } catch (const std::exception& e) {
        std::cerr << "qsr-bench-avg: rank " << rank << ": " << e.what() << "\n";
      }
      _exit(rc);
    }
    pids.push_back(pid);
  }
  // Reap with a deadline; a rank that fails ends the benchmark.
  const auto deadline = Clock::now() + std::chrono::seconds(c.timeout_s + 30);
  int failed = 0;
  size_t alive = pids.size();
  while (alive > 0) {
    int status = 0;
    pid_t done = waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      --alive;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ++failed;
        for (pid_t p : pids) kill(p, SIGTERM);
      }
      continue;
    }
    if (Clock::now() > deadline) {
      std::cerr << "qsr-bench-avg: timed out after " << c.timeout_s << " s\n";
      for (pid_t p : pids) kill(p, SIGKILL);
      ++failed;
      while (waitpid(-1, nullptr, 0) > 0) {
      }
      break;
    }
    usleep(20000);
  }
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace qsr

int main(int argc, char** argv) { return qsr::Main(argc, argv); }
