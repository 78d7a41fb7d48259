#include "agent/agent_service.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/connection_security.h"
#include "glog/logging.h"

namespace qsr {
namespace {

bool EndsGeneration(v1::Outcome::Code code) {
  return code == v1::Outcome::GENERATION_ENDED || code == v1::Outcome::RUN_FINISHED ||
         code == v1::Outcome::RUN_FAILED;
}

// What a local worker sees of an upstream status: a call cancelled by our own shutdown is
// "unavailable", which the worker retries, not a failure of its own.
grpc::Status Downstream(const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::CANCELLED) {
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        "qsr-agent: the call to the coordinator was cancelled (agent shutting down)");
  }
  return s;
}

// The coordinator understood the group and refused it: one member may be the cause. (Transport
// errors concern the whole group alike and are passed on as they are.)
bool IsRefusal(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
         s.error_code() == grpc::StatusCode::NOT_FOUND ||
         s.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
}

const grpc::Status kShuttingDown(grpc::StatusCode::UNAVAILABLE, "qsr-agent is shutting down");

}  // namespace

AgentService::AgentService(std::shared_ptr<grpc::Channel> channel, std::string token,
                           absl::Duration window)
    : stub_(v1::Coordinator::NewStub(channel)),  // the stub keeps the channel
      token_(std::move(token)),
      window_(window),
      barrier_stream_(stub_.get(), token_),
      coalescer_(window) {}

AgentService::~AgentService() { Shutdown(); }

std::shared_ptr<grpc::ClientContext> AgentService::Upstream(absl::Time deadline) {
  auto ctx = std::make_shared<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + kMaxForward)));
  AttachToken(token_, ctx.get());
  absl::MutexLock lock(&mu_);
  if (shut_down_) return nullptr;
  in_flight_[ctx.get()] = ctx;
  return ctx;
}

void AgentService::Unregister(grpc::ClientContext* ctx) {
  absl::MutexLock lock(&mu_);
  in_flight_.erase(ctx);
}

template <typename Request, typename Reply, typename Call, typename OnOk>
grpc::ServerUnaryReactor* AgentService::Forward(grpc::CallbackServerContext* ctx,
                                                const Request* request, Reply* reply, Call call,
                                                OnOk on_ok) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  std::shared_ptr<grpc::ClientContext> upstream = Upstream(absl::FromChrono(ctx->deadline()));
  if (upstream == nullptr) {
    reactor->Finish(kShuttingDown);
    return reactor;
  }
  forwarded_calls_.fetch_add(1, std::memory_order_relaxed);
  grpc::ClientContext* raw = upstream.get();
  call(raw, request, reply, [this, reactor, request, reply, upstream, on_ok](grpc::Status s) {
    if (s.ok()) on_ok(*request, *reply);
    reactor->Finish(Downstream(s));
    Unregister(upstream.get());  // last: Shutdown's drain waits for it
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Join(grpc::CallbackServerContext* ctx,
                                             const v1::JoinRequest* request, v1::JoinReply* reply) {
  return Forward(
      ctx, request, reply,
      [this](grpc::ClientContext* c, const v1::JoinRequest* q, v1::JoinReply* p,
             std::function<void(grpc::Status)> f) { stub_->async()->Join(c, q, p, std::move(f)); },
      [this](const v1::JoinRequest& q, const v1::JoinReply& p) {
        if (p.outcome().code() != v1::Outcome::OK) return;
        absl::MutexLock lock(&mu_);
        coalescer_.Admitted(q.worker_id(), p.rank(), p.generation());
        if (p.heartbeat_interval_ms() > 0) {
          heartbeat_interval_ = absl::Milliseconds(p.heartbeat_interval_ms());
        }
        refused_beats_.erase(q.worker_id());
      });
}

grpc::ServerUnaryReactor* AgentService::Leave(grpc::CallbackServerContext* ctx,
                                              const v1::LeaveRequest* request,
                                              v1::LeaveReply* reply) {
  return Forward(
      ctx, request, reply,
      [this](grpc::ClientContext* c, const v1::LeaveRequest* q, v1::LeaveReply* p,
             std::function<void(grpc::Status)> f) { stub_->async()->Leave(c, q, p, std::move(f)); },
      [this](const v1::LeaveRequest& q, const v1::LeaveReply&) {
        std::vector<Group> ready;
        {
          absl::MutexLock lock(&mu_);
          ready = coalescer_.Left(q.worker_id());
        }
        SendAll(std::move(ready));
      });
}

grpc::ServerUnaryReactor* AgentService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                  const v1::HeartbeatRequest* request,
                                                  v1::HeartbeatReply* reply) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  local_heartbeats_.fetch_add(1, std::memory_order_relaxed);
  grpc::Status status = grpc::Status::OK;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      status = kShuttingDown;
    } else if (auto refused = refused_beats_.find(request->worker_id());
               refused != refused_beats_.end()) {
      // The coordinator refused this worker's last beat: it hears that now, once.
      status = refused->second;
      refused_beats_.erase(refused);
    } else {
      beats_[request->worker_id()] = Beat{request->rank(), request->generation(), request->step()};
      auto known = outcomes_.find(request->generation());
      if (known != outcomes_.end()) {
        *reply->mutable_outcome() = known->second;
      } else {
        reply->mutable_outcome()->set_code(v1::Outcome::OK);
      }
      if (next_beat_ == absl::InfiniteFuture()) {
        next_beat_ = absl::Now() + heartbeat_interval_;
        ++work_;
      }
    }
  }
  reactor->Finish(status);
  return reactor;
}

absl::Time AgentService::BeatUpstream(absl::Time now) {
  std::map<int64_t, std::vector<std::pair<std::string, Beat>>> by_generation;
  absl::Duration interval;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_ || now < next_beat_) return next_beat_;
    for (auto& [worker_id, beat] : beats_) {
      by_generation[beat.generation].emplace_back(worker_id, beat);
    }
    beats_.clear();
    next_beat_ = absl::InfiniteFuture();  // the next local beat sets it again
    interval = heartbeat_interval_;
  }
  for (auto& [generation, beats] : by_generation) {
    SendBeat(generation, std::move(beats), interval, /*split_on_error=*/true);
  }
  return absl::InfiniteFuture();
}

void AgentService::SendBeat(int64_t generation, std::vector<std::pair<std::string, Beat>> beats,
                            absl::Duration interval, bool split_on_error) {
  if (beats.empty()) return;
  auto request = std::make_shared<v1::HeartbeatRequest>();
  auto reply = std::make_shared<v1::HeartbeatReply>();
  request->set_worker_id(beats.front().first);
  request->set_rank(beats.front().second.rank);
  request->set_generation(generation);
  request->set_step(beats.front().second.step);
  for (size_t i = 1; i < beats.size(); ++i) {
    v1::CoMember* m = request->add_co_members();
    m->set_worker_id(beats[i].first);
    m->set_rank(beats[i].second.rank);
  }
  std::shared_ptr<grpc::ClientContext> upstream =
      Upstream(absl::Now() + std::max(2 * interval, absl::Seconds(1)));
  if (upstream == nullptr) return;
  upstream_heartbeats_.fetch_add(1, std::memory_order_relaxed);
  auto shared_beats = std::make_shared<std::vector<std::pair<std::string, Beat>>>(std::move(beats));
  stub_->async()->Heartbeat(upstream.get(), request.get(), reply.get(),
                            [this, upstream, request, reply, shared_beats, generation, interval,
                             split_on_error](grpc::Status s) {
                              if (s.ok()) {
                                {
                                  absl::MutexLock lock(&mu_);
                                  outcomes_[generation] = reply->outcome();
                                  if (reply->outcome().code() == v1::Outcome::OK) {
                                    for (const auto& [worker_id, beat] : *shared_beats) {
                                      coalescer_.Confirmed(worker_id, beat.rank, generation);
                                    }
                                  }
                                }
                                ObserveOutcome(reply->outcome(), generation);
                              } else if (IsRefusal(s)) {
                                if (split_on_error && shared_beats->size() > 1) {
                                  for (auto& beat : *shared_beats) {
                                    SendBeat(generation, {beat}, interval,
                                             /*split_on_error=*/false);
                                  }
                                } else {
                                  // This worker's own refusal: its next local beat hears it (its
                                  // Heartbeater then treats the generation as ended).
                                  absl::MutexLock lock(&mu_);
                                  refused_beats_[shared_beats->front().first] = s;
                                }
                              }
                              // Transport errors: the next beat tries again, as the worker's own
                              // Heartbeater would.
                              Unregister(upstream.get());  // last: Shutdown's drain waits for it
                            });
}

// The calls the agent does not interpret.
#define QSR_AGENT_FORWARD(Method, Request, Reply)                                                \
  grpc::ServerUnaryReactor* AgentService::Method(grpc::CallbackServerContext* ctx,               \
                                                 const v1::Request* request, v1::Reply* reply) { \
    return Forward(                                                                              \
        ctx, request, reply,                                                                     \
        [this](grpc::ClientContext* c, const v1::Request* q, v1::Reply* p,                       \
               std::function<void(grpc::Status)> f) {                                            \
          stub_->async()->Method(c, q, p, std::move(f));                                         \
        },                                                                                       \
        [](const v1::Request&, const v1::Reply&) {});                                            \
  }
QSR_AGENT_FORWARD(KvSet, KvSetRequest, KvSetReply)
QSR_AGENT_FORWARD(KvGet, KvGetRequest, KvGetReply)
QSR_AGENT_FORWARD(GetStatus, GetStatusRequest, GetStatusReply)
QSR_AGENT_FORWARD(ListRounds, ListRoundsRequest, ListRoundsReply)
QSR_AGENT_FORWARD(ListEvals, ListEvalsRequest, ListEvalsReply)
QSR_AGENT_FORWARD(Stop, StopRequest, StopReply)
#undef QSR_AGENT_FORWARD

grpc::ServerUnaryReactor* AgentService::NextRounds(grpc::CallbackServerContext* ctx,
                                                   const v1::NextRoundsRequest* request,
                                                   v1::NextRoundsReply* reply) {
  barrier_calls_.fetch_add(1, std::memory_order_relaxed);
  if (!request->co_members().empty()) {
    // Already a group (an agent behind an agent): pass it on as it is.
    upstream_barrier_calls_.fetch_add(1, std::memory_order_relaxed);
    return Forward(
        ctx, request, reply,
        [this](grpc::ClientContext* c, const v1::NextRoundsRequest* q, v1::NextRoundsReply* p,
               std::function<void(grpc::Status)> f) {
          stub_->async()->NextRounds(c, q, p, std::move(f));
        },
        [this](const v1::NextRoundsRequest& q, const v1::NextRoundsReply& p) {
          ObserveOutcome(p.outcome(), q.generation());
        });
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  BarrierCoalescer::Arrival arrival;
  arrival.worker_id = request->worker_id();
  arrival.rank = request->rank();
  arrival.generation = request->generation();
  arrival.next_round = request->next_round();
  arrival.deadline = absl::FromChrono(ctx->deadline());
  std::vector<Group> ready;
  std::optional<BarrierCall> superseded;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      reactor->Finish(kShuttingDown);
      return reactor;
    }
    arrival.id = next_id_++;
    calls_[arrival.id] = BarrierCall{reactor, reply};
    std::optional<uint64_t> replaced;
    ready = coalescer_.Arrive(std::move(arrival), absl::Now(), &replaced);
    if (replaced.has_value()) {
      auto it = calls_.find(*replaced);
      superseded = it->second;
      calls_.erase(it);
    }
    ++work_;
  }
  if (superseded.has_value()) {
    superseded_.fetch_add(1, std::memory_order_relaxed);
    superseded->reply->mutable_outcome()->set_code(v1::Outcome::TIMEOUT);
    superseded->reply->mutable_outcome()->set_message("superseded by a newer NextRounds call");
    superseded->reactor->Finish(grpc::Status::OK);
  }
  SendAll(std::move(ready));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Report(grpc::CallbackServerContext* ctx,
                                               const v1::ReportRequest* request,
                                               v1::ReportReply* reply) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  local_reports_.fetch_add(1, std::memory_order_relaxed);
  std::vector<HeldReport> batch;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) {
      reactor->Finish(kShuttingDown);
      return reactor;
    }
    if (held_reports_.empty()) {
      reports_since_ = absl::Now();
      ++work_;
    }
    held_reports_.push_back(HeldReport{reactor, request, reply, absl::FromChrono(ctx->deadline())});
    // Every local worker has a report waiting (at the end of a run they all flush at once):
    // nothing more to wait for.
    if (static_cast<int>(held_reports_.size()) >= coalescer_.KnownWorkers()) {
      batch.swap(held_reports_);
    }
  }
  SendReports(std::move(batch));
  return reactor;
}

void AgentService::SendReports(std::vector<HeldReport> batch) {
  if (batch.empty()) return;
  auto request = std::make_shared<v1::ReportBatchRequest>();
  auto reply = std::make_shared<v1::ReportBatchReply>();
  absl::Time deadline = absl::InfiniteFuture();
  for (const HeldReport& h : batch) {
    *request->add_reports() = *h.request;
    deadline = std::min(deadline, h.deadline);
  }
  auto held = std::make_shared<std::vector<HeldReport>>(std::move(batch));
  std::shared_ptr<grpc::ClientContext> upstream = Upstream(deadline);
  if (upstream == nullptr) {
    for (HeldReport& h : *held) h.reactor->Finish(kShuttingDown);
    return;
  }
  upstream_report_batches_.fetch_add(1, std::memory_order_relaxed);
  stub_->async()->ReportBatch(
      upstream.get(), request.get(), reply.get(),
      [this, upstream, request, reply, held](grpc::Status s) {
        for (size_t i = 0; i < held->size(); ++i) {
          HeldReport& h = (*held)[i];
          if (s.ok() && static_cast<int>(i) < reply->results_size()) {
            const v1::ReportResult& r = reply->results(static_cast<int>(i));
            *h.reply = r.reply();
            h.reactor->Finish(
                grpc::Status(static_cast<grpc::StatusCode>(r.status_code()), r.status_message()));
          } else if (s.ok()) {
            h.reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL,
                                           "the coordinator's report batch reply is short"));
          } else {
            h.reactor->Finish(Downstream(s));
          }
        }
        Unregister(upstream.get());  // last: Shutdown's drain waits for it
      });
}

void AgentService::SendAll(std::vector<Group> groups) {
  for (Group& g : groups) Send(std::move(g), /*split_on_error=*/true);
}

void AgentService::Send(Group group, bool split_on_error) {
  if (group.arrivals.empty()) return;
  v1::NextRoundsRequest request;
  const BarrierCoalescer::Arrival& first = group.arrivals.front();
  request.set_worker_id(first.worker_id);
  request.set_rank(first.rank);
  request.set_generation(group.generation);
  request.set_next_round(group.next_round);
  for (size_t i = 1; i < group.arrivals.size(); ++i) {
    v1::CoMember* m = request.add_co_members();
    m->set_worker_id(group.arrivals[i].worker_id);
    m->set_rank(group.arrivals[i].rank);
  }
  upstream_barrier_calls_.fetch_add(1, std::memory_order_relaxed);
  const absl::Time deadline = std::min(group.deadline, absl::Now() + kMaxForward);
  auto shared_group = std::make_shared<Group>(std::move(group));
  barrier_stream_.Call(
      request, deadline,
      [this, shared_group, split_on_error](const grpc::Status& s,
                                           const v1::NextRoundsReply& reply) {
        if (split_on_error && shared_group->arrivals.size() > 1 && IsRefusal(s)) {
          // One member may be the cause: let each call hear its own verdict.
          LOG(WARNING) << "coordinator refused a barrier group of " << shared_group->arrivals.size()
                       << " (" << s.error_message() << "); sending its calls one by one";
          for (BarrierCoalescer::Arrival& a : shared_group->arrivals) {
            Group one;
            one.generation = shared_group->generation;
            one.next_round = shared_group->next_round;
            one.deadline = a.deadline;
            one.arrivals.push_back(std::move(a));
            Send(std::move(one), /*split_on_error=*/false);
          }
          return;
        }
        std::vector<BarrierCall> calls;
        {
          absl::MutexLock lock(&mu_);
          const bool confirmed = s.ok() && reply.outcome().code() == v1::Outcome::OK;
          for (const auto& a : shared_group->arrivals) {
            if (confirmed) coalescer_.Confirmed(a.worker_id, a.rank, a.generation);
            auto it = calls_.find(a.id);
            if (it == calls_.end()) continue;  // superseded meanwhile
            calls.push_back(it->second);
            calls_.erase(it);
          }
        }
        for (BarrierCall& c : calls) {
          if (s.ok()) *c.reply = reply;
          c.reactor->Finish(s);
        }
        if (s.ok()) ObserveOutcome(reply.outcome(), shared_group->generation);
      });
}

void AgentService::ObserveOutcome(const v1::Outcome& outcome, int64_t generation) {
  if (!EndsGeneration(outcome.code())) return;
  std::vector<Group> ready;
  {
    absl::MutexLock lock(&mu_);
    ready = coalescer_.Flush(outcome.code() == v1::Outcome::GENERATION_ENDED
                                 ? std::optional<int64_t>(generation)
                                 : std::nullopt);
  }
  SendAll(std::move(ready));
}

absl::Time AgentService::FlushExpired(absl::Time now) {
  std::vector<Group> ready;
  absl::Time next;
  {
    absl::MutexLock lock(&mu_);
    ready = coalescer_.Expire(now);
    next = coalescer_.NextExpiry();
  }
  SendAll(std::move(ready));
  std::vector<HeldReport> reports;
  {
    absl::MutexLock lock(&mu_);
    if (!held_reports_.empty()) {
      if (now - reports_since_ >= window_) {
        reports.swap(held_reports_);
      } else {
        next = std::min(next, reports_since_ + window_);
      }
    }
  }
  SendReports(std::move(reports));
  next = std::min(next, BeatUpstream(now));
  return std::min(next, barrier_stream_.Expire(now));
}

void AgentService::WaitForWork(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const int64_t seen = work_;
  auto changed = [this, seen]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return work_ != seen || shut_down_; };
  mu_.AwaitWithDeadline(absl::Condition(&changed), std::min(deadline, coalescer_.NextExpiry()));
}

void AgentService::Shutdown() {
  std::vector<Group> held;
  std::vector<HeldReport> reports;
  std::vector<std::shared_ptr<grpc::ClientContext>> cancel;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    ++work_;
    held = coalescer_.Flush(std::nullopt);
    reports.swap(held_reports_);
    for (auto& [raw, weak] : in_flight_) {
      if (std::shared_ptr<grpc::ClientContext> ctx = weak.lock()) cancel.push_back(std::move(ctx));
    }
  }
  // Outside the lock: gRPC may run the cancelled calls' callbacks (which take it) inline.
  for (const auto& ctx : cancel) ctx->TryCancel();
  // Held reports: UNAVAILABLE, so that their senders keep them and try again.
  SendReports(std::move(reports));
  // With the stream shut, each held or waiting barrier call is answered UNAVAILABLE: its worker
  // asks again.
  barrier_stream_.Shutdown();
  SendAll(std::move(held));
}

bool AgentService::AwaitIdle(absl::Time deadline) {
  if (!barrier_stream_.AwaitIdle(deadline)) return false;
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

AgentService::Stats AgentService::stats() const {
  Stats s;
  s.barrier_calls = barrier_calls_.load();
  s.upstream_barrier_calls = upstream_barrier_calls_.load();
  s.forwarded_calls = forwarded_calls_.load();
  s.superseded = superseded_.load();
  s.local_heartbeats = local_heartbeats_.load();
  s.local_reports = local_reports_.load();
  s.upstream_report_batches = upstream_report_batches_.load();
  s.upstream_heartbeats = upstream_heartbeats_.load();
  absl::MutexLock lock(&mu_);
  s.known_workers = coalescer_.KnownWorkers();
  return s;
}

}  // namespace qsr
