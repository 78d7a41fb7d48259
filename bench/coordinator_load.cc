// qsr-bench-coord: benchmark 3, a load generator that simulates K workers against one running
// qsr-coordinator.
//
// Every simulated worker runs a worker's control-plane cycle with gRPC's callback API (no thread
// per worker): Join, then NextRounds (the round barrier) for round 0, NextRounds for the next
// round, and so on until the coordinator answers RUN_FINISHED, then a last Report and Leave.
// Reports go like the worker's ReportSender (client/report_sender.h): the rounds trained queue up
// and one Report carries them about once per --report-interval-ms (1 s, the worker's default;
// 0.75-1.25 of it at random, as the worker waits), sent without waiting for the reply;
// --report-interval-ms 0 sends one Report per barrier (twice the worker's RPCs). Like a real
// worker, each also calls Heartbeat every 0.75-1.25 of the heartbeat interval the Join reply names
// (from one ticker thread for all of them). Before commit fd431cd every worker sent its heartbeat
// at the same moment and its reports at a fixed interval: bursts of K calls that the worker's own
// Heartbeater never sent. Join and NextRounds answered TIMEOUT are asked again. By default training
// takes no time, so the coordinator sees barriers back to back: the worst case for it (the replies
// of one barrier compete with the arrivals at the next for the CPU). --train-ms makes each round
// take that long (a gRPC alarm per worker, no thread), so that releases and arrivals are apart as
// in a real run and the release latency is the barrier's own.
//
// --ranks-per-agent S simulates S workers per host behind a host agent (qsr-agent): each host's
// Join and Leave calls go as the agent forwards them (one per worker, over the host's one
// connection), its heartbeat goes once per interval for all of its workers (co_members, as the
// agent beats), its reports go in batches (ReportBatch: when every worker of the host has one
// waiting, or 500 ms after the first, as the agent batches them), and its round barrier goes as one
// NextRounds call carrying the host's S ranks (co_members), sent when the host's last worker
// arrives (the agent's common case; its local hop runs on each host's own cores and is not
// simulated), over the host's NextRoundsStream with the agent's own client (BarrierStream;
// --agent-transport unary: a unary call each). A worker's release is then the time the host's call
// was answered. --channels defaults to one connection per host.
//
// Measured, per barrier b (the b-th NextRounds of every worker): the client-side send time of
// the last worker to arrive and the time each worker's reply came back. Release latency of a
// worker = its reply time - the last arrival; a barrier's "all released" latency = the last
// reply - the last arrival. Rank 0 of the report is a JSON line:
//   {"bench":"coordinator","workers":K,"channels":C,"barriers":B,"rounds_per_s":...,
//    "release_p50_ms","release_p99_ms" (over every worker and barrier),
//    "all_released_p50_ms","all_released_p99_ms","all_released_max_ms" (over barriers),
//    "coordinator_cpu_s","coordinator_cpu_util" (CPU seconds / wall seconds of the barrier phase),
//    "coordinator_rss_MB","coordinator_hwm_MB" (with --coordinator-pid), "loadgen_cpu_s" (this
//    process, to tell a saturated load generator from a slow coordinator),
//    "coordinator_cpu_per_barrier_ms","loadgen_cpu_per_barrier_ms" (CPU between the moments the
//    first and the last barrier released everyone, divided by the barriers in between: the
//    barrier phase alone, without Join and Leave), "errors":n}
//
// Bounded: every RPC has a deadline, and the whole run --timeout-s.
#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "agent/barrier_stream.h"
#include "bench/proc_stats.h"
#include "common/backoff.h"
#include "common/flags.h"
#include "qsr/v1/coordinator.grpc.pb.h"

namespace qsr {
namespace {

using Clock = std::chrono::steady_clock;

// 0.75-1.25 of `interval` at random, as the worker's periodic senders wait.
absl::Duration Periodic(absl::Duration interval, absl::BitGenRef random) {
  return BackoffDelay({interval, interval, kPeriodicJitter}, 0, random);
}

double Since(Clock::time_point origin, Clock::time_point t) {
  return std::chrono::duration<double>(t - origin).count();
}

class LoadGenerator {
 public:
  LoadGenerator(std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs, int workers,
                int max_barriers, std::chrono::milliseconds rpc_timeout,
                std::chrono::milliseconds report_interval, std::chrono::milliseconds train_time,
                int coordinator_pid, int ranks_per_agent, bool agent_stream, bool batch_reports)
      : stubs_(std::move(stubs)),
        workers_(workers),
        ranks_per_agent_(ranks_per_agent),
        batch_reports_(batch_reports),
        hosts_((workers + ranks_per_agent - 1) / ranks_per_agent),
        max_barriers_(max_barriers),
        rpc_timeout_(rpc_timeout),
        report_interval_(report_interval),
        train_time_(train_time),
        sent_(static_cast<size_t>(max_barriers) * workers, Clock::time_point()),
        received_(static_cast<size_t>(max_barriers) * workers, Clock::time_point()),
        sims_(workers),
        coordinator_pid_(coordinator_pid),
        released_(max_barriers),
        cpu_at_release_(max_barriers) {
    if (ranks_per_agent > 1 && agent_stream) {
      for (size_t h = 0; h < hosts_.size(); ++h) {
        hosts_[h].stream =
            std::make_unique<BarrierStream>(stubs_[h % stubs_.size()].get(), std::string());
      }
    }
    for (int i = 0; i < workers; ++i) {
      sims_[i].id = i;
      sims_[i].random.seed(static_cast<unsigned>(i) + 1);
    }
    for (auto& n : released_) n.store(0);
  }

  // Starts every worker and waits until all are done or `deadline`. False on timeout.
  bool Run(Clock::time_point deadline) {
    origin_ = Clock::now();
    deadline_ = deadline;
    for (Sim& s : sims_) Join(&s);
    std::unique_lock<std::mutex> lock(mu_);
    // The heartbeat ticker: this thread, between checks for the end of the run. Each worker beats
    // on its own clock, every 0.75-1.25 of the interval at random, as the worker's Heartbeater
    // does (so a group's beats spread out instead of arriving as one burst).
    std::mt19937 random(1);
    while (finished_ != workers_ && Clock::now() < deadline) {
      const int interval_ms = heartbeat_interval_ms_.load();
      if (interval_ms > 0) {
        lock.unlock();
        const Clock::time_point now = Clock::now();
        for (Sim& s : sims_) {
          if (!s.joined.load(std::memory_order_acquire) || s.done.load()) continue;
          // Behind an agent, the host beats once for its workers (on its first worker's clock).
          if (s.id % ranks_per_agent_ != 0) continue;
          const bool first = s.next_beat == Clock::time_point();
          if (!first && now < s.next_beat) continue;
          if (!first) Heartbeat(&s);
          s.next_beat =
              now + absl::ToChronoNanoseconds(Periodic(absl::Milliseconds(interval_ms), random));
        }
        lock.lock();
      }
      if (ranks_per_agent_ > 1 && batch_reports_) {
        lock.unlock();
        FlushReports(Clock::now());
        lock.lock();
      }
      done_cv_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(10)));
    }
    return finished_ == workers_;
  }
  int heartbeats() const { return heartbeats_.load(); }

  int errors() const { return errors_.load(); }
  std::string first_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }
  int reports() const { return reports_.load(); }
  // Barriers every worker completed.
  int barriers() const {
    int b = max_barriers_;
    for (const Sim& s : sims_) b = std::min(b, s.barrier);
    return b;
  }
  Clock::time_point sent(int b, int w) const { return sent_[Index(b, w)]; }
  Clock::time_point received(int b, int w) const { return received_[Index(b, w)]; }
  // CPU seconds of the coordinator and of this process when barrier b had released everyone.
  std::pair<double, double> cpu_at_release(int b) const { return cpu_at_release_[b]; }
  int workers() const { return workers_; }

 private:
  struct Sim {
    int id = 0;
    int rank = -1;
    int64_t generation = 0;
    int barrier = 0;  // NextRounds calls answered so far.
    int64_t next_round = 0;
    std::atomic<bool> joined{false};  // rank and generation are set (for the ticker)
    std::atomic<bool> done{false};
    Clock::time_point next_beat;  // the ticker's only
    std::mt19937 random;          // the worker's callback chain's only (report jitter)
    // Rounds trained and not yet reported, and when the next Report may go (ReportSender's
    // interval). Touched by the worker's own callback chain only.
    std::vector<v1::RoundReport> unreported;
    Clock::time_point next_report;
    // Simulated training (--train-ms): a fresh alarm per wait; the one before is kept too, since
    // its callback may still be returning when the next wait starts.
    std::unique_ptr<grpc::Alarm> alarms[2];
  };

  // A worker's report held by its host's agent.
  struct HeldReport {
    Sim* sim;
    v1::ReportRequest request;
    std::function<void()> then;
  };
  // A host's workers waiting for the rest of the host at the barrier (--ranks-per-agent), and
  // its reports waiting for a batch.
  struct Host {
    std::vector<HeldReport> reports;
    Clock::time_point reports_since;
    std::mutex mu;
    std::vector<Sim*> arrived;
    // The host's barrier stream to the coordinator (the agent's own client; null: unary calls).
    std::unique_ptr<BarrierStream> stream;
  };

  size_t Index(int b, int w) const { return static_cast<size_t>(b) * workers_ + w; }
  int HostOf(const Sim& s) const { return s.id / ranks_per_agent_; }
  int HostSize(int host) const {
    return std::min(ranks_per_agent_, workers_ - host * ranks_per_agent_);
  }
  v1::Coordinator::Stub* StubFor(const Sim& s) { return stubs_[HostOf(s) % stubs_.size()].get(); }
  std::string WorkerId(const Sim& s) const { return absl::StrCat("sim-", s.id); }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + rpc_timeout_);
    return ctx;
  }

  void Fail(Sim* s, const std::string& what) {
    s->done.store(true);
    if (errors_.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> lock(mu_);
      first_error_ = absl::StrCat(WorkerId(*s), ": ", what);
    }
    Finish();
  }

  bool PastDeadline() const { return Clock::now() >= deadline_; }

  // 0.75-1.25 of --report-interval-ms at random, as the worker's ReportSender waits.
  Clock::duration ReportInterval(Sim* s) {
    return std::chrono::duration_cast<Clock::duration>(
        absl::ToChronoNanoseconds(Periodic(absl::FromChrono(report_interval_), s->random)));
  }

  void Heartbeat(Sim* s) {
    struct Call {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::HeartbeatRequest request;
      v1::HeartbeatReply reply;
    };
    auto call = std::make_shared<Call>();
    call->ctx = Context();
    call->request.set_worker_id(WorkerId(*s));
    call->request.set_rank(s->rank);
    call->request.set_generation(s->generation);
    if (ranks_per_agent_ > 1) {
      const int host = HostOf(*s);
      for (int i = host * ranks_per_agent_ + 1; i < host * ranks_per_agent_ + HostSize(host); ++i) {
        const Sim& peer = sims_[i];
        if (!peer.joined.load(std::memory_order_acquire) || peer.done.load()) continue;
        v1::CoMember* m = call->request.add_co_members();
        m->set_worker_id(WorkerId(peer));
        m->set_rank(peer.rank);
      }
    }
    StubFor(*s)->async()->Heartbeat(call->ctx.get(), &call->request, &call->reply,
                                    [this, call](grpc::Status status) {
                                      if (status.ok()) heartbeats_.fetch_add(1);
                                    });
  }

  void Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    if (++finished_ == workers_) done_cv_.notify_all();
  }

  void Join(Sim* s) {
    struct Call {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::JoinRequest request;
      v1::JoinReply reply;
    };
    auto call = std::make_shared<Call>();
    call->ctx = Context();
    call->request.set_worker_id(WorkerId(*s));
    call->request.set_host("127.0.0.1");
    call->request.set_device("cpu");
    StubFor(*s)->async()->Join(
        call->ctx.get(), &call->request, &call->reply, [this, s, call](grpc::Status status) {
          if (!status.ok()) return Fail(s, "Join: " + status.error_message());
          const v1::Outcome::Code code = call->reply.outcome().code();
          if (code == v1::Outcome::TIMEOUT && !PastDeadline()) {
            return Join(s);  // not formed yet: ask again
          }
          if (code != v1::Outcome::OK) {
            return Fail(s, "Join: " + call->reply.outcome().message());
          }
          s->rank = call->reply.rank();
          s->generation = call->reply.generation();
          heartbeat_interval_ms_.store(static_cast<int>(call->reply.heartbeat_interval_ms()));
          s->joined.store(true, std::memory_order_release);
          s->next_report = Clock::now() + ReportInterval(s);
          NextRounds(s);
        });
  }

  void NextRounds(Sim* s) {
    struct Call {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::NextRoundsRequest request;
      v1::NextRoundsReply reply;
      std::vector<Sim*> sims;  // the caller and its co-members
    };
    if (s->barrier >= max_barriers_) return ReportThenLeave(s);
    sent_[Index(s->barrier, s->id)] = Clock::now();
    auto call = std::make_shared<Call>();
    if (ranks_per_agent_ == 1) {
      call->sims = {s};
    } else {
      // The host's last worker to arrive sends the host's call.
      Host& host = hosts_[HostOf(*s)];
      std::lock_guard<std::mutex> lock(host.mu);
      host.arrived.push_back(s);
      if (static_cast<int>(host.arrived.size()) < HostSize(HostOf(*s))) return;
      call->sims.swap(host.arrived);
    }
    call->ctx = Context();
    Sim* caller = call->sims.front();
    call->request.set_worker_id(WorkerId(*caller));
    call->request.set_rank(caller->rank);
    call->request.set_generation(caller->generation);
    call->request.set_next_round(caller->next_round);
    for (size_t i = 1; i < call->sims.size(); ++i) {
      v1::CoMember* m = call->request.add_co_members();
      m->set_worker_id(WorkerId(*call->sims[i]));
      m->set_rank(call->sims[i]->rank);
    }
    if (BarrierStream* stream = hosts_[HostOf(*caller)].stream.get()) {
      stream->Call(call->request, absl::Now() + absl::FromChrono(rpc_timeout_),
                   [this, call](const grpc::Status& status, const v1::NextRoundsReply& reply) {
                     const Clock::time_point now = Clock::now();
                     for (Sim* sim : call->sims) Released(sim, status, reply, now);
                   });
      return;
    }
    StubFor(*caller)->async()->NextRounds(call->ctx.get(), &call->request, &call->reply,
                                          [this, call](grpc::Status status) {
                                            const Clock::time_point now = Clock::now();
                                            for (Sim* sim : call->sims)
                                              Released(sim, status, call->reply, now);
                                          });
  }

  // The barrier answered `s` (alone or with its host).
  void Released(Sim* s, const grpc::Status& status, const v1::NextRoundsReply& reply,
                Clock::time_point now) {
    if (!status.ok()) return Fail(s, "NextRounds: " + status.error_message());
    const v1::Outcome::Code code = reply.outcome().code();
    if (code == v1::Outcome::RUN_FINISHED) return ReportThenLeave(s);
    if (code == v1::Outcome::TIMEOUT && !PastDeadline()) return NextRounds(s);
    if (code != v1::Outcome::OK || reply.rounds_size() == 0) {
      return Fail(s, "NextRounds: " + reply.outcome().message());
    }
    received_[Index(s->barrier, s->id)] = now;
    if (released_[s->barrier].fetch_add(1) + 1 == workers_) {
      // The last worker of this barrier: one /proc read per barrier.
      cpu_at_release_[s->barrier] = {SampleProc(coordinator_pid_).cpu_s, SelfCpuSeconds()};
    }
    ++s->barrier;
    for (const v1::RoundPlan& p : reply.rounds()) s->unreported.push_back(Trained(p));
    if (now >= s->next_report) {
      Report(s, nullptr);
      s->next_report = now + ReportInterval(s);
    }
    s->next_round = reply.rounds(reply.rounds_size() - 1).round() + 1;
    if (train_time_.count() == 0) return NextRounds(s);
    Train(s, reply.rounds_size());
  }

  // Simulates training `rounds` rounds, then asks for the next ones.
  void Train(Sim* s, int rounds) {
    std::unique_ptr<grpc::Alarm>& alarm = s->alarms[s->barrier % 2];
    alarm = std::make_unique<grpc::Alarm>();
    alarm->Set(std::chrono::system_clock::now() + rounds * train_time_, [this, s](bool fired) {
      if (!fired) return Fail(s, "training alarm cancelled");
      NextRounds(s);
    });
  }

  // What a worker reports for a round it trained.
  static v1::RoundReport Trained(const v1::RoundPlan& p) {
    v1::RoundReport r;
    r.set_round(p.round());
    r.set_start_step(p.start_step());
    r.set_h(p.h());
    r.set_train_loss(1.0);
    r.set_samples(p.h());
    r.set_seconds(0.001);
    r.set_bytes_sent(1000);
    r.set_params_digest(42);
    return r;
  }

  // The worker flushes its reports before it leaves (so that its last rounds commit).
  void ReportThenLeave(Sim* s) {
    if (s->unreported.empty()) return Leave(s);
    Report(s, [this, s] { Leave(s); });
  }

  // Sends the queued round reports. Without `then`, fire and forget (counted): the worker's
  // reports are asynchronous too; with it, `then` runs when the reply comes.
  void Report(Sim* s, std::function<void()> then) {
    struct Call {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::ReportRequest request;
      v1::ReportReply reply;
    };
    auto call = std::make_shared<Call>();
    call->ctx = Context();
    call->request.set_worker_id(WorkerId(*s));
    call->request.set_rank(s->rank);
    call->request.set_generation(s->generation);
    for (v1::RoundReport& r : s->unreported) *call->request.add_rounds() = std::move(r);
    s->unreported.clear();
    if (ranks_per_agent_ > 1 && batch_reports_) {
      // The agent holds the host's reports and sends them as one batch.
      Host& host = hosts_[HostOf(*s)];
      std::vector<HeldReport> batch;
      {
        std::lock_guard<std::mutex> lock(host.mu);
        if (host.reports.empty()) host.reports_since = Clock::now();
        host.reports.push_back(HeldReport{s, std::move(call->request), std::move(then)});
        if (static_cast<int>(host.reports.size()) >= HostSize(HostOf(*s))) {
          batch.swap(host.reports);
        }
      }
      return SendReports(*s, std::move(batch));
    }
    StubFor(*s)->async()->Report(call->ctx.get(), &call->request, &call->reply,
                                 [this, s, call, then = std::move(then)](grpc::Status status) {
                                   if (status.ok()) reports_.fetch_add(1);
                                   if (!then) return;
                                   if (!status.ok())
                                     return Fail(s, "Report: " + status.error_message());
                                   then();
                                 });
  }

  // Sends a host's held reports as one ReportBatch (as qsr-agent does); each `then` runs with
  // its own result.
  void SendReports(const Sim& any, std::vector<HeldReport> batch) {
    if (batch.empty()) return;
    struct Call {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::ReportBatchRequest request;
      v1::ReportBatchReply reply;
      std::vector<HeldReport> held;
    };
    auto call = std::make_shared<Call>();
    call->ctx = Context();
    for (HeldReport& h : batch) *call->request.add_reports() = std::move(h.request);
    call->held = std::move(batch);
    StubFor(any)->async()->ReportBatch(
        call->ctx.get(), &call->request, &call->reply, [this, call](grpc::Status status) {
          for (size_t i = 0; i < call->held.size(); ++i) {
            HeldReport& h = call->held[i];
            const bool ok = status.ok() && static_cast<int>(i) < call->reply.results_size() &&
                            call->reply.results(static_cast<int>(i)).status_code() == 0;
            if (ok) reports_.fetch_add(1);
            if (!h.then) continue;
            if (!ok) {
              Fail(h.sim, "Report (batch): " +
                              (status.ok() ? std::string("refused") : status.error_message()));
              continue;
            }
            h.then();
          }
        });
  }

  // Batches whose window (--report-window-ms, as qsr-agent's) has passed go out.
  void FlushReports(Clock::time_point now) {
    for (size_t i = 0; i < hosts_.size(); ++i) {
      std::vector<HeldReport> batch;
      {
        std::lock_guard<std::mutex> lock(hosts_[i].mu);
        if (hosts_[i].reports.empty() || now - hosts_[i].reports_since < report_window_) continue;
        batch.swap(hosts_[i].reports);
      }
      SendReports(sims_[i * ranks_per_agent_], std::move(batch));
    }
  }

  void Leave(Sim* s) {
    struct Call {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::LeaveRequest request;
      v1::LeaveReply reply;
    };
    auto call = std::make_shared<Call>();
    call->ctx = Context();
    call->request.set_worker_id(WorkerId(*s));
    call->request.set_rank(s->rank);
    call->request.set_generation(s->generation);
    s->done.store(true);
    StubFor(*s)->async()->Leave(call->ctx.get(), &call->request, &call->reply,
                                [this, call](grpc::Status) { Finish(); });
  }

  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs_;
  const int workers_;
  const int ranks_per_agent_;
  const bool batch_reports_;
  std::vector<Host> hosts_;
  const int max_barriers_;
  const std::chrono::milliseconds rpc_timeout_;
  const std::chrono::milliseconds report_interval_;
  const std::chrono::milliseconds train_time_;
  // How long an agent holds a report for a batch (qsr-agent's --window-ms default).
  const std::chrono::milliseconds report_window_{500};
  Clock::time_point origin_;
  // [barrier][worker]; each slot is written by its worker's callback chain only, and read after
  // Run() returns (the mutex in Finish orders the writes before the read).
  std::vector<Clock::time_point> sent_, received_;
  std::vector<Sim> sims_;
  const int coordinator_pid_;
  // Per barrier: workers released so far, and the CPU samples taken when the last one was
  // (written once, by that worker's callback; read after Run() like sent_ and received_).
  std::vector<std::atomic<int>> released_;
  std::vector<std::pair<double, double>> cpu_at_release_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  int finished_ = 0;
  std::string first_error_;
  std::atomic<int> errors_{0};
  std::atomic<int> reports_{0};
  std::atomic<int> heartbeats_{0};
  std::atomic<int> heartbeat_interval_ms_{0};
  Clock::time_point deadline_;
};

int Main(int argc, char** argv) {
  // As in qsr-coordinator: the distribution's Abseil runs its deadlock detector on every
  // absl::Mutex (gRPC's included) unless told not to; this process simulates K clients on shared
  // cores, so its own overhead is kept down.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  FlagParser flags("qsr-bench-coord",
                   "qsr-bench-coord --coordinator HOST:PORT --workers K [--barriers 50]\n"
                   "Simulates K workers' Join / NextRounds / Report / Leave cycles against a "
                   "running qsr-coordinator (started with --workers=K) and prints one JSON line.");
  flags.Add("coordinator", "", "the coordinator's HOST:PORT (required)");
  flags.Add("workers", "16", "simulated workers (the coordinator's recipe must say the same)");
  flags.Add("barriers", "50", "stop after this many round barriers (or when the run finishes)");
  flags.Add("channels", "0", "gRPC channels (TCP connections) shared by the workers; 0 = K");
  flags.Add("coordinator-pid", "0", "measure this process's CPU and memory (0: don't)");
  flags.Add("rpc-timeout-s", "60", "deadline of every RPC");
  flags.Add("report-interval-ms", "1000",
            "send a worker's queued round reports at most this often, as the worker's "
            "ReportSender does (0: one Report per barrier)");
  flags.Add("train-ms", "0", "simulated training time per round (0: none, barriers back to back)");
  flags.Add("agent-transport", "stream",
            "with --ranks-per-agent > 1, how a host's barrier call travels: stream (one "
            "NextRoundsStream per host, as qsr-agent does) or unary (one NextRounds call each)");
  flags.AddBool("agent-reports-unbatched",
                "with --ranks-per-agent > 1, send each worker's reports on their own instead of "
                "in the agent's batches (for comparison)");
  flags.Add("ranks-per-agent", "1",
            "workers per host behind a host agent: each host's barrier is one NextRounds call "
            "with its ranks as co_members (1: every worker calls the coordinator itself)");
  flags.Add("timeout-s", "300", "bound on the whole run");
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  absl::StatusOr<int64_t> workers = flags.GetInt("workers"), barriers = flags.GetInt("barriers"),
                          channels = flags.GetInt("channels"),
                          pid = flags.GetInt("coordinator-pid"),
                          rpc_timeout = flags.GetInt("rpc-timeout-s"),
                          timeout = flags.GetInt("timeout-s"),
                          report_interval = flags.GetInt("report-interval-ms"),
                          train_ms = flags.GetInt("train-ms"),
                          per_agent = flags.GetInt("ranks-per-agent");
  for (const auto* v : {&workers, &barriers, &channels, &pid, &rpc_timeout, &timeout,
                        &report_interval, &train_ms, &per_agent}) {
    if (!v->ok()) {
      std::cerr << "qsr-bench-coord: " << v->status().message() << "\n";
      return 2;
    }
  }
  if (flags.Get("coordinator").empty() || *workers < 1 || *workers > 65536 || *barriers < 1 ||
      *channels < 0 || *pid < 0 || *rpc_timeout < 1 || *timeout < 1 || *report_interval < 0 ||
      *train_ms < 0 || *per_agent < 1 || *per_agent > 1024) {
    std::cerr << "qsr-bench-coord: --coordinator is required; --workers in [1, 65536], "
                 "--barriers, --rpc-timeout-s and --timeout-s >= 1, --channels, "
                 "--report-interval-ms and --train-ms >= 0, --ranks-per-agent in [1, 1024]\n";
    return 2;
  }
  if (flags.Get("agent-transport") != "stream" && flags.Get("agent-transport") != "unary") {
    std::cerr << "qsr-bench-coord: --agent-transport is " << flags.Get("agent-transport")
              << "; allowed: stream, unary\n";
    return 2;
  }
  const int k = static_cast<int>(*workers);
  const int hosts = static_cast<int>((k + *per_agent - 1) / *per_agent);
  const int c = *channels == 0 ? hosts : static_cast<int>(std::min<int64_t>(*channels, hosts));
  std::vector<std::unique_ptr<v1::Coordinator::Stub>> stubs;
  for (int i = 0; i < c; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // Distinct arguments: one connection per channel.
    stubs.push_back(v1::Coordinator::NewStub(grpc::CreateCustomChannel(
        flags.Get("coordinator"), grpc::InsecureChannelCredentials(), args)));
  }
  LoadGenerator gen(std::move(stubs), k, static_cast<int>(*barriers),
                    std::chrono::seconds(*rpc_timeout), std::chrono::milliseconds(*report_interval),
                    std::chrono::milliseconds(*train_ms), static_cast<int>(*pid),
                    static_cast<int>(*per_agent), flags.Get("agent-transport") == "stream",
                    !flags.GetBool("agent-reports-unbatched"));
  const ProcSample before = SampleProc(static_cast<int>(*pid));
  const double self_before = SelfCpuSeconds();
  const Clock::time_point start = Clock::now();
  const bool finished = gen.Run(start + std::chrono::seconds(*timeout));
  const Clock::time_point end = Clock::now();
  const ProcSample after = SampleProc(static_cast<int>(*pid));
  const double self_cpu = SelfCpuSeconds() - self_before;
  if (!finished) {
    std::cerr << "qsr-bench-coord: timed out after " << *timeout << " s\n";
    std::_Exit(1);  // Calls are still in flight; don't wait for them.
  }
  if (gen.errors() > 0) {
    std::cerr << "qsr-bench-coord: " << gen.errors()
              << " workers failed; first: " << gen.first_error() << "\n";
    return 1;
  }
  const int b = gen.barriers();
  std::vector<double> release_ms, all_released_ms;
  Clock::time_point first_release = end, last_release = start;
  for (int i = 0; i < b; ++i) {
    Clock::time_point last_arrival = gen.sent(i, 0), last_reply = gen.received(i, 0);
    for (int w = 0; w < k; ++w) {
      last_arrival = std::max(last_arrival, gen.sent(i, w));
      last_reply = std::max(last_reply, gen.received(i, w));
    }
    for (int w = 0; w < k; ++w) {
      release_ms.push_back(1e3 * Since(last_arrival, gen.received(i, w)));
    }
    all_released_ms.push_back(1e3 * Since(last_arrival, last_reply));
    first_release = std::min(first_release, last_reply);
    last_release = std::max(last_release, last_reply);
  }
  const double barrier_wall = b > 1 ? Since(first_release, last_release) : Since(start, end);
  const double rounds_per_s = b > 1 ? (b - 1) / barrier_wall : 0;
  const double wall = Since(start, end);
  // The barrier phase: from the first barrier's release to the last one's.
  double coord_per_barrier_ms = 0, loadgen_per_barrier_ms = 0;
  if (b > 1) {
    coord_per_barrier_ms =
        1e3 * (gen.cpu_at_release(b - 1).first - gen.cpu_at_release(0).first) / (b - 1);
    loadgen_per_barrier_ms =
        1e3 * (gen.cpu_at_release(b - 1).second - gen.cpu_at_release(0).second) / (b - 1);
  }
  std::cout << absl::StrFormat(
                   "{\"bench\":\"coordinator\",\"workers\":%d,\"channels\":%d,\"barriers\":%d,"
                   "\"reports\":%d,\"wall_s\":%.3f,\"rounds_per_s\":%.2f,"
                   "\"release_p50_ms\":%.3f,\"release_p99_ms\":%.3f,"
                   "\"all_released_p50_ms\":%.3f,\"all_released_p99_ms\":%.3f,"
                   "\"all_released_max_ms\":%.3f,\"coordinator_cpu_s\":%.3f,"
                   "\"coordinator_cpu_util\":%.3f,\"coordinator_rss_MB\":%.1f,"
                   "\"coordinator_hwm_MB\":%.1f,\"loadgen_cpu_s\":%.3f,\"heartbeats\":%d,"
                   "\"coordinator_cpu_per_barrier_ms\":%.2f,\"loadgen_cpu_per_barrier_ms\":%.2f,"
                   "\"report_interval_ms\":%d,\"train_ms\":%d,\"ranks_per_agent\":%d,"
                   "\"agent_transport\":\"%s\","
                   "\"errors\":%d,\"all_released_ms\":[%s]}",
                   k, c, b, gen.reports(), wall, rounds_per_s, Percentile(release_ms, 50),
                   Percentile(release_ms, 99), Percentile(all_released_ms, 50),
                   Percentile(all_released_ms, 99), Percentile(all_released_ms, 100),
                   after.cpu_s - before.cpu_s, (after.cpu_s - before.cpu_s) / wall, after.rss_mb,
                   after.hwm_mb, self_cpu, gen.heartbeats(), coord_per_barrier_ms,
                   loadgen_per_barrier_ms, static_cast<int>(*report_interval),
                   static_cast<int>(*train_ms), static_cast<int>(*per_agent),
                   *per_agent > 1 ? flags.Get("agent-transport") : std::string("none"),
                   gen.errors(),
                   absl::StrJoin(all_released_ms, ",",
                                 [](std::string* out, double v) {
                                   absl::StrAppend(out, absl::StrFormat("%.3f", v));
                                 }))
            << std::endl;
  return 0;
}

}  // namespace
}  // namespace qsr

int main(int argc, char** argv) { return qsr::Main(argc, argv); }
