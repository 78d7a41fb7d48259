// qsr-bench-release-floor: what releasing K waiters costs on this machine when no coordinator
// logic runs at all, to put benchmark 3's numbers (qsr-bench-coord) in proportion.
//
// A server process (forked first, so that neither process has threads at the fork) holds K
// connections, one per simulated worker. Every worker sends an 8-byte arrival for barrier b and
// waits; when the server has all K arrivals it sends each worker an 8-byte release, and the worker
// at once sends its arrival for b + 1 (barriers back to back, as qsr-bench-coord with --train-ms
// 0). Measured exactly as there: a worker's release latency is the time its release came back minus
// the send time of the last arrival of that barrier; a barrier's "all released" latency is the
// last release minus that last arrival. Barrier 0 (connections warming up) is not counted.
//
// Transports (--transport):
//   tcp   plain TCP sockets and epoll on both sides, one thread each: the kernel's own cost, the
//         floor for any design that keeps one connection per worker.
//   grpc  one gRPC bidirectional stream per worker (callback API, generic byte messages, one
//         channel per worker unless --channels): what a streaming coordinator transport would cost,
//         against the unary long-poll that qsr-bench-coord measures.
//
// Prints one JSON line:
//   {"bench":"release_floor","transport":..,"workers":K,"channels":C,"barriers":B,
//    "release_p50_ms","release_p99_ms","all_released_p50_ms","all_released_p99_ms",
//    "all_released_max_ms","server_cpu_per_barrier_ms","client_cpu_per_barrier_ms"}
//
// Bounded: every wait has a deadline (--timeout-s for the whole run); the server dies with the
// client (PR_SET_PDEATHSIG) and is killed and reaped at the end.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/proc_stats.h"
#include "common/flags.h"

namespace qsr {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kMethod[] = "/qsr.bench.ReleaseFloor/Watch";

double Ms(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// Send and release times of every worker at every barrier, and CPU samples at the moment barrier
// 1 and the last barrier had released everyone. Thread-safe: each worker writes only its own
// slots, the per-barrier counters are atomic.
class Timeline {
 public:
  Timeline(int workers, int barriers, int server_pid)
      : k_(workers),
        b_(barriers),
        server_pid_(server_pid),
        sent_(static_cast<size_t>(workers) * barriers),
        got_(static_cast<size_t>(workers) * barriers),
        released_(barriers) {}

  void Sent(int w, int b) { sent_[Index(w, b)] = Clock::now(); }
  // Returns true when this was the last worker of the last barrier.
  bool Released(int w, int b) {
    got_[Index(w, b)] = Clock::now();
    if (released_[b].fetch_add(1) + 1 != k_) return false;
    if (b == 1) cpu_first_ = {SampleProc(server_pid_).cpu_s, SelfCpuSeconds()};
    if (b == b_ - 1) cpu_last_ = {SampleProc(server_pid_).cpu_s, SelfCpuSeconds()};
    return b == b_ - 1;
  }

  std::string Json(const std::string& transport, int channels) const {
    std::vector<double> each, all;
    for (int b = 1; b < b_; ++b) {
      Clock::time_point last_sent = sent_[Index(0, b)], last_got = got_[Index(0, b)];
      for (int w = 0; w < k_; ++w) {
        last_sent = std::max(last_sent, sent_[Index(w, b)]);
        last_got = std::max(last_got, got_[Index(w, b)]);
      }
      for (int w = 0; w < k_; ++w) each.push_back(Ms(last_sent, got_[Index(w, b)]));
      all.push_back(Ms(last_sent, last_got));
    }
    const double between = std::max(1, b_ - 2);
    return absl::StrFormat(
        "{\"bench\":\"release_floor\",\"transport\":\"%s\",\"workers\":%d,\"channels\":%d,"
        "\"barriers\":%d,\"release_p50_ms\":%.3f,\"release_p99_ms\":%.3f,"
        "\"all_released_p50_ms\":%.3f,\"all_released_p99_ms\":%.3f,\"all_released_max_ms\":%.3f,"
        "\"server_cpu_per_barrier_ms\":%.2f,\"client_cpu_per_barrier_ms\":%.2f}",
        transport, k_, channels, b_ - 1, Percentile(each, 50), Percentile(each, 99),
        Percentile(all, 50), Percentile(all, 99), Percentile(all, 100),
        1e3 * (cpu_last_[0] - cpu_first_[0]) / between,
        1e3 * (cpu_last_[1] - cpu_first_[1]) / between);
  }

 private:
  size_t Index(int w, int b) const { return static_cast<size_t>(b) * k_ + w; }
  const int k_, b_, server_pid_;
  std::vector<Clock::time_point> sent_, got_;
  std::vector<std::atomic<int>> released_;
  std::array<double, 2> cpu_first_{}, cpu_last_{};
};

// Raises the open-file limit to its hard limit; returns the limit now in force.
rlim_t RaiseFdLimit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur;
}

// ---- tcp ------------------------------------------------------------------------------------

// The server: accepts connections and counts 8-byte arrivals; the K-th releases everyone.
// Returns when every connection has closed or the deadline passed.
int ServeTcp(int listen_fd, int workers, Clock::time_point deadline) {
  const int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd;
  epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev);
  std::vector<int> conns;
  int open = 0, arrived = 0;
  bool accepted_all = false;
  uint64_t release = 0;
  std::vector<epoll_event> events(512);
  while (Clock::now() < deadline && !(accepted_all && open == 0)) {
    const int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listen_fd) {
        const int c = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK);
        if (c < 0) continue;
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        epoll_event e{};
        e.events = EPOLLIN;
        e.data.fd = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        conns.push_back(c);
        ++open;
        accepted_all = static_cast<int>(conns.size()) == workers;
        continue;
      }
      // A worker has at most one arrival outstanding, so a read returns whole 8-byte messages
      // (TCP may still split one; the byte count is what is counted).
      char buf[64];
      const ssize_t r = read(fd, buf, sizeof(buf));
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        conns.erase(std::find(conns.begin(), conns.end(), fd));
        --open;
        continue;
      }
      arrived += static_cast<int>(r);
      if (arrived == 8 * workers) {
        arrived = 0;
        ++release;
        for (int c : conns) {
          if (write(c, &release, sizeof(release)) != sizeof(release)) return 1;
        }
      }
    }
  }
  return Clock::now() < deadline ? 0 : 1;
}

// K worker sockets driven by one epoll thread.
bool RunTcpClients(int port, int workers, int barriers, Timeline* timeline,
                   Clock::time_point deadline) {
  const int ep = epoll_create1(0);
  std::vector<int> fds(workers, -1);
  auto close_all = [&] {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
    close(ep);
  };
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  // Linux bounds a blocking connect by the socket's send timeout.
  const timeval connect_timeout{10, 0};
  for (int w = 0; w < workers; ++w) {
    fds[w] = socket(AF_INET, SOCK_STREAM, 0);
    if (fds[w] < 0) {
      std::cerr << "qsr-bench-release-floor: socket: " << std::strerror(errno) << "\n";
      close_all();
      return false;
    }
    setsockopt(fds[w], SOL_SOCKET, SO_SNDTIMEO, &connect_timeout, sizeof(connect_timeout));
    if (connect(fds[w], reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      std::cerr << "qsr-bench-release-floor: connect: " << std::strerror(errno) << "\n";
      close_all();
      return false;
    }
    int one = 1;
    setsockopt(fds[w], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fds[w], F_SETFL, O_NONBLOCK);
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u32 = static_cast<uint32_t>(w);
    epoll_ctl(ep, EPOLL_CTL_ADD, fds[w], &e);
  }
  std::vector<int> barrier(workers, 0);
  const uint64_t arrival = 0;
  for (int w = 0; w < workers; ++w) {
    timeline->Sent(w, 0);
    if (write(fds[w], &arrival, sizeof(arrival)) != sizeof(arrival)) {
      close_all();
      return false;
    }
  }
  int done = 0;
  std::vector<epoll_event> events(512);
  while (done < workers) {
    const int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    const int n =
        left > 0 ? epoll_wait(ep, events.data(), static_cast<int>(events.size()), left) : 0;
    if (n <= 0) {
      std::cerr << "qsr-bench-release-floor: timed out with " << done << " of " << workers
                << " workers done\n";
      close_all();
      return false;
    }
    for (int i = 0; i < n; ++i) {
      const int w = static_cast<int>(events[i].data.u32);
      uint64_t msg;
      const ssize_t r = read(fds[w], &msg, sizeof(msg));
      if (r != sizeof(msg)) {
        if (r < 0 && errno == EAGAIN) continue;
        std::cerr << "qsr-bench-release-floor: the server closed or split a release\n";
        close_all();
        return false;
      }
      timeline->Released(w, barrier[w]);
      if (++barrier[w] == barriers) {
        ++done;
        continue;
      }
      timeline->Sent(w, barrier[w]);
      if (write(fds[w], &arrival, sizeof(arrival)) != sizeof(arrival)) {
        close_all();
        return false;
      }
    }
  }
  close_all();
  return true;
}

// ---- grpc -----------------------------------------------------------------------------------

grpc::ByteBuffer Bytes(uint64_t v) {
  grpc::Slice slice(&v, sizeof(v));
  return grpc::ByteBuffer(&slice, 1);
}

// The server's barrier: the reactors of the connected workers and the count of arrivals.
// Thread-safe. It owns the reactors for the life of the server process (a benchmark's few
// thousand), so a release that races with a stream's end never touches freed memory.
class GrpcBarrier;

class ServerStream : public grpc::ServerGenericBidiReactor {
 public:
  explicit ServerStream(GrpcBarrier* barrier);
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;
  // Sends release `b` unless the stream has ended. The worker's next arrival can reach the
  // server before this write's OnWriteDone, so a release that finds a write in flight is queued
  // (a worker has one arrival outstanding, so at most one release waits).
  void Release(uint64_t b);

  bool registered = false;  // guarded by the barrier's mutex

 private:
  GrpcBarrier* barrier_;
  grpc::ByteBuffer in_, out_;
  std::mutex mu_;
  bool writing_ = false;  // guarded by mu_
  bool ended_ = false;    // guarded by mu_: Finish called or OnDone reached
  uint64_t queued_ = 0;   // guarded by mu_: a release waiting for the write in flight (0: none)
};

class GrpcBarrier : public grpc::CallbackGenericService {
 public:
  explicit GrpcBarrier(int workers) : workers_(workers) {}
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    std::lock_guard<std::mutex> lock(mu_);
    owned_.push_back(std::make_unique<ServerStream>(this));
    return owned_.back().get();
  }
  // A worker's arrival; the K-th releases everyone.
  void Arrive(ServerStream* s) {
    std::vector<ServerStream*> release;
    uint64_t b;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!s->registered) {
        s->registered = true;
        streams_.push_back(s);
      }
      if (++arrived_ < workers_) return;
      arrived_ = 0;
      b = ++barrier_;
      release = streams_;
    }
    for (ServerStream* r : release) r->Release(b);
  }
  void Gone(ServerStream* s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!s->registered) return;
    s->registered = false;
    streams_.erase(std::remove(streams_.begin(), streams_.end(), s), streams_.end());
  }

 private:
  const int workers_;
  std::mutex mu_;
  std::vector<std::unique_ptr<ServerStream>> owned_;  // guarded by mu_
  std::vector<ServerStream*> streams_;                // guarded by mu_: those that arrived
  int arrived_ = 0;                                   // guarded by mu_
  uint64_t barrier_ = 0;                              // guarded by mu_
};

ServerStream::ServerStream(GrpcBarrier* barrier) : barrier_(barrier) { StartRead(&in_); }

void ServerStream::OnReadDone(bool ok) {
  if (!ok) {
    barrier_->Gone(this);
    std::lock_guard<std::mutex> lock(mu_);
    if (!ended_) {
      ended_ = true;
      Finish(grpc::Status::OK);
    }
    return;
  }
  barrier_->Arrive(this);
  StartRead(&in_);
}

void ServerStream::Release(uint64_t b) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ended_) return;
  if (writing_) {
    queued_ = b;
    return;
  }
  writing_ = true;
  out_ = Bytes(b);
  StartWrite(&out_);
}

void ServerStream::OnWriteDone(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  writing_ = false;
  if (!ok || ended_ || queued_ == 0) return;  // A failed write: the failed read ends the stream.
  writing_ = true;
  out_ = Bytes(queued_);
  queued_ = 0;
  StartWrite(&out_);
}

void ServerStream::OnDone() {
  barrier_->Gone(this);
  std::lock_guard<std::mutex> lock(mu_);
  ended_ = true;
}

int ServeGrpc(int pipe_fd, int workers, Clock::time_point deadline) {
  GrpcBarrier service(workers);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return 1;
  if (write(pipe_fd, &port, sizeof(port)) != sizeof(port)) return 1;
  close(pipe_fd);
  // Until the client kills this process (or dies: PR_SET_PDEATHSIG), at most to the deadline.
  while (Clock::now() < deadline) sleep(1);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 1;
}

class ClientStream : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  ClientStream(int worker, int barriers, Timeline* timeline, std::function<void(bool)> done)
      : w_(worker), barriers_(barriers), timeline_(timeline), done_(std::move(done)) {}

  void Start(grpc::GenericStub* stub, Clock::time_point deadline) {
    ctx_.set_deadline(std::chrono::system_clock::now() + (deadline - Clock::now()));
    stub->PrepareBidiStreamingCall(&ctx_, kMethod, grpc::StubOptions(), this);
    StartRead(&in_);
    Send(0);
    StartCall();
  }
  // A release can arrive before gRPC has reported the arrival's write done, and a stream takes
  // one write at a time: the next arrival (or the end of writes) goes out once both the release
  // of the current barrier has been read and the arrival's write has completed.
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone reports the failure.
    int b;
    {
      std::lock_guard<std::mutex> lock(mu_);
      b = b_;
    }
    timeline_->Released(w_, b);
    if (b + 1 < barriers_) StartRead(&in_);
    Step(/*read=*/true);
  }
  void OnWriteDone(bool ok) override {
    if (ok) Step(/*read=*/false);
  }
  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    done_(status.ok() && b_ == barriers_);
  }

 private:
  void Step(bool read) {
    int next;
    {
      std::lock_guard<std::mutex> lock(mu_);
      (read ? released_ : written_) = true;
      if (!released_ || !written_) return;
      released_ = written_ = false;
      next = ++b_;
    }
    if (next == barriers_) {
      StartWritesDone();
    } else {
      Send(next);
    }
  }
  void Send(int b) {
    timeline_->Sent(w_, b);
    out_ = Bytes(static_cast<uint64_t>(b));
    StartWrite(&out_);
  }
  const int w_, barriers_;
  Timeline* timeline_;
  std::function<void(bool)> done_;
  grpc::ClientContext ctx_;
  grpc::ByteBuffer in_, out_;
  std::mutex mu_;
  int b_ = 0;              // guarded by mu_: the barrier this worker is in
  bool released_ = false;  // guarded by mu_: its release was read
  bool written_ = false;   // guarded by mu_: its arrival's write completed
};

bool RunGrpcClients(int port, int workers, int channels, int barriers, Timeline* timeline,
                    Clock::time_point deadline) {
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // Distinct arguments: one connection per channel.
    stubs.push_back(std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(
        absl::StrFormat("127.0.0.1:%d", port), grpc::InsecureChannelCredentials(), args)));
  }
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0, failed = 0;
  auto done = [&](bool ok) {
    std::lock_guard<std::mutex> lock(mu);
    ++finished;
    if (!ok) ++failed;
    cv.notify_all();
  };
  std::vector<std::unique_ptr<ClientStream>> streams;
  for (int w = 0; w < workers; ++w) {
    streams.push_back(std::make_unique<ClientStream>(w, barriers, timeline, done));
  }
  for (int w = 0; w < workers; ++w) streams[w]->Start(stubs[w % channels].get(), deadline);
  std::unique_lock<std::mutex> lock(mu);
  // The streams carry the same deadline, so every one finishes (OnDone) by then; the extra
  // seconds are for gRPC to deliver those OnDone calls.
  if (!cv.wait_until(lock, deadline + std::chrono::seconds(10),
                     [&] { return finished == workers; })) {
    std::cerr << "qsr-bench-release-floor: gRPC streams did not finish\n";
    std::_Exit(1);  // Reactors still referenced by gRPC: no orderly teardown possible.
  }
  if (failed > 0) {
    std::cerr << "qsr-bench-release-floor: " << failed << " gRPC streams failed\n";
    return false;
  }
  return true;
}

int Main(int argc, char** argv) {
  FlagParser flags("qsr-bench-release-floor",
                   "qsr-bench-release-floor --transport tcp|grpc [--workers 1024] [--barriers 50]\n"
                   "Times releasing K waiters, back to back, with no coordinator logic: the "
                   "floor under benchmark 3. Prints one JSON line.");
  flags.Add("transport", "tcp", "tcp (plain sockets and epoll) or grpc (a bidi stream each)");
  flags.Add("workers", "1024", "simulated workers K, one connection each");
  flags.Add("barriers", "50", "barriers to time (one more is run first, not counted)");
  flags.Add("channels", "0", "grpc only: channels (TCP connections) the streams share; 0 = K");
  flags.Add("timeout-s", "120", "bound on the whole run");
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  const std::string transport = flags.Get("transport");
  absl::StatusOr<int64_t> workers = flags.GetInt("workers"), barriers = flags.GetInt("barriers"),
                          channels = flags.GetInt("channels"), timeout = flags.GetInt("timeout-s");
  for (const auto* v : {&workers, &barriers, &channels, &timeout}) {
    if (!v->ok()) {
      std::cerr << "qsr-bench-release-floor: " << v->status().message() << "\n";
      return 2;
    }
  }
  if ((transport != "tcp" && transport != "grpc") || *workers < 1 || *workers > 16384 ||
      *barriers < 2 || *barriers > 10000 || *channels < 0 || *timeout < 1 || *timeout > 86400) {
    std::cerr << "qsr-bench-release-floor: --transport is tcp or grpc; --workers in [1, 16384], "
                 "--barriers in [2, 10000], --channels >= 0, --timeout-s in [1, 86400]\n";
    return 2;
  }
  if (transport == "tcp" && *channels != 0) {
    std::cerr << "qsr-bench-release-floor: --channels applies to --transport grpc only (tcp "
                 "always opens one connection per worker)\n";
    return 2;
  }
  const int k = static_cast<int>(*workers);
  const int b = static_cast<int>(*barriers) + 1;  // barrier 0 warms up
  const int c = *channels == 0 ? k : static_cast<int>(std::min<int64_t>(*channels, k));
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(*timeout);
  // Each process holds K sockets (and gRPC a few more per channel).
  if (const rlim_t limit = RaiseFdLimit(); limit < static_cast<rlim_t>(k) + 64) {
    std::cerr << "qsr-bench-release-floor: --workers " << k << " needs " << k + 64
              << " open files per process; the limit is " << limit << " (ulimit -n)\n";
    return 2;
  }

  // The listening socket (tcp) or a pipe for the port (grpc) is made before the fork; the
  // server process makes no threads until after it.
  int listen_fd = -1, port = 0, pipe_fds[2] = {-1, -1};
  if (transport == "tcp") {
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd, 4096) != 0 ||
        getsockname(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::cerr << "qsr-bench-release-floor: listen: " << std::strerror(errno) << "\n";
      return 1;
    }
    port = ntohs(addr.sin_port);
  } else if (pipe(pipe_fds) != 0) {
    std::cerr << "qsr-bench-release-floor: pipe: " << std::strerror(errno) << "\n";
    return 1;
  }
  const pid_t server = fork();
  if (server < 0) {
    std::cerr << "qsr-bench-release-floor: fork: " << std::strerror(errno) << "\n";
    return 1;
  }
  if (server == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (transport == "tcp") std::_Exit(ServeTcp(listen_fd, k, deadline));
    close(pipe_fds[0]);
    std::_Exit(ServeGrpc(pipe_fds[1], k, deadline));
  }
  bool ok = false;
  Timeline timeline(k, b, server);
  if (transport == "tcp") {
    close(listen_fd);
    ok = RunTcpClients(port, k, b, &timeline, deadline);
  } else {
    close(pipe_fds[1]);
    // The server writes its port once it listens, or exits (the read then sees end of file).
    pollfd ready{pipe_fds[0], POLLIN, 0};
    ok = poll(&ready, 1, 30000) == 1 && read(pipe_fds[0], &port, sizeof(port)) == sizeof(port) &&
         port > 0;
    close(pipe_fds[0]);
    if (!ok) std::cerr << "qsr-bench-release-floor: the gRPC server did not start\n";
    if (ok) ok = RunGrpcClients(port, k, c, b, &timeline, deadline);
  }
  kill(server, SIGKILL);
  waitpid(server, nullptr, 0);
  if (!ok) return 1;
  std::cout << timeline.Json(transport, transport == "tcp" ? k : c) << std::endl;
  return 0;
}

}  // namespace
}  // namespace qsr

int main(int argc, char** argv) { return qsr::Main(argc, argv); }
