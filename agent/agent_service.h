// AgentService: the host agent's qsr.v1.Coordinator service (callback API). The workers of one
// host call it instead of the coordinator; it forwards their calls upstream and coalesces their
// round barrier.
//
// Protocol. Every call but NextRounds, Heartbeat and Report is forwarded as it is (same request,
// same reply, same status; the caller's deadline, capped at kMaxForward, becomes the upstream
// call's). The agent watches the replies go by: a Join answered OK makes the worker a local member
// of its generation (and names the heartbeat interval); so does an OK answer to a heartbeat or a
// barrier call that carried it (an agent that restarts mid-run relearns its host that way); a
// Leave removes it. Heartbeats are answered
// at once, with the outcome the coordinator last gave the caller's generation. Once per heartbeat
// interval the agent beats upstream for the workers that beat it since its last beat, one call per
// generation with co_members: a worker that stops beating the agent stops being reported alive, so
// the coordinator's timeout still finds it. An outcome that ends the generation or the run
// (GENERATION_ENDED, RUN_FINISHED, RUN_FAILED) reaches each worker at its next beat, and flushes
// the barrier calls held for that generation, so that the coordinator answers them. A refused group
// beat is sent again worker by worker; a worker whose own beat was refused hears that error at its
// next beat. Reports are held (at most the window) and sent as one ReportBatch when every local
// worker has one waiting or the window has passed; each call is answered with its own result, so a
// report is acknowledged only once the coordinator has it (a worker that flushes before it leaves
// still knows its rounds are in). NextRounds calls are held by a BarrierCoalescer (see there for
// when a group goes out) and sent as one call with co_members, over one long-lived stream
// (BarrierStream); its answer answers every call in the group. When the coordinator refuses a group
// (INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION: one bad member may be the cause), each call
// of the group is sent again on its own, so that each worker gets its own verdict; transport errors
// go to every call of the group as they are. Upstream calls cancelled by Shutdown answer
// UNAVAILABLE, which workers treat as "retry" (a restarted agent picks them up).
//
// The agent serves its own host only: it takes no token from its workers and uses its own
// credentials (TLS, token) upstream. HostAgent binds it to loopback or a Unix socket.
//
// Thread-safe. Lifecycle: construct, serve, Shutdown() (cancels upstream calls, answers held
// ones), AwaitIdle(), then destroy after the gRPC server has shut down.
#ifndef QSR_AGENT_AGENT_SERVICE_H_
#define QSR_AGENT_AGENT_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/barrier_coalescer.h"
#include "agent/barrier_stream.h"
#include "qsr/v1/coordinator.grpc.pb.h"

namespace qsr {

class AgentService final : public v1::Coordinator::CallbackService {
 public:
  // Longest an upstream call may take, whatever the caller's deadline.
  static constexpr absl::Duration kMaxForward = absl::Hours(1);

  struct Stats {
    int64_t barrier_calls = 0;            // NextRounds calls from local workers
    int64_t upstream_barrier_calls = 0;   // NextRounds calls sent to the coordinator
    int64_t forwarded_calls = 0;          // other calls forwarded
    int64_t superseded = 0;               // held barrier calls replaced by a retry
    int64_t local_heartbeats = 0;         // Heartbeat calls from local workers
    int64_t upstream_heartbeats = 0;      // Heartbeat calls sent to the coordinator
    int64_t local_reports = 0;            // Report calls from local workers
    int64_t upstream_report_batches = 0;  // ReportBatch calls sent to the coordinator
    int64_t known_workers = 0;            // local workers the agent knows as members (now)
  };

  // `channel` leads to the coordinator; `token` (may be empty) goes with every upstream call.
  AgentService(std::shared_ptr<grpc::Channel> channel, std::string token, absl::Duration window);
  ~AgentService() override;

  // Sends the held groups whose window has passed and fails barrier calls past their deadline;
  // returns when to call again.
  absl::Time FlushExpired(absl::Time now);
  // Blocks until something may need flushing (the next expiry, a new held group) or `deadline`.
  void WaitForWork(absl::Time deadline);
  // Refuses new calls, answers the held ones UNAVAILABLE (their workers ask again) and cancels
  // the upstream calls in flight. Idempotent.
  void Shutdown();
  // After Shutdown: waits until no upstream callback is running or pending (they use this
  // object), or `deadline`. Returns whether that happened.
  bool AwaitIdle(absl::Time deadline);
  Stats stats() const;

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const v1::JoinRequest* request,
                                 v1::JoinReply* reply) override;
  grpc::ServerUnaryReactor* NextRounds(grpc::CallbackServerContext* ctx,
                                       const v1::NextRoundsRequest* request,
                                       v1::NextRoundsReply* reply) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* ctx,
                                   const v1::ReportRequest* request,
                                   v1::ReportReply* reply) override;
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const v1::LeaveRequest* request,
                                  v1::LeaveReply* reply) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatReply* reply) override;
  grpc::ServerUnaryReactor* KvSet(grpc::CallbackServerContext* ctx, const v1::KvSetRequest* request,
                                  v1::KvSetReply* reply) override;
  grpc::ServerUnaryReactor* KvGet(grpc::CallbackServerContext* ctx, const v1::KvGetRequest* request,
                                  v1::KvGetReply* reply) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* ctx,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusReply* reply) override;
  grpc::ServerUnaryReactor* ListRounds(grpc::CallbackServerContext* ctx,
                                       const v1::ListRoundsRequest* request,
                                       v1::ListRoundsReply* reply) override;
  grpc::ServerUnaryReactor* ListEvals(grpc::CallbackServerContext* ctx,
                                      const v1::ListEvalsRequest* request,
                                      v1::ListEvalsReply* reply) override;
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* ctx, const v1::StopRequest* request,
                                 v1::StopReply* reply) override;

 private:
  // A local NextRounds call held or in flight upstream.
  struct BarrierCall {
    grpc::ServerUnaryReactor* reactor;
    v1::NextRoundsReply* reply;
  };
  using Group = BarrierCoalescer::Group;

  // An upstream context with the caller's deadline (capped), the token, and registration for
  // Shutdown's cancellation. Null after Shutdown.
  std::shared_ptr<grpc::ClientContext> Upstream(absl::Time deadline);
  void Unregister(grpc::ClientContext* ctx);
  // Sends `group` upstream on the barrier stream; answers its calls when the answer comes.
  // `split_on_error`: a refused group of several is sent again call by call.
  void Send(Group group, bool split_on_error);
  void SendAll(std::vector<Group> groups);
  // A local Report call waiting to go up in a batch.
  struct HeldReport {
    grpc::ServerUnaryReactor* reactor;
    const v1::ReportRequest* request;
    v1::ReportReply* reply;
    absl::Time deadline;
  };
  // Sends `batch` as one ReportBatch; answers each call with its own result.
  void SendReports(std::vector<HeldReport> batch);
  struct Beat {
    int rank = 0;
    int64_t generation = 0;
    int64_t step = 0;
  };
  // Sends one heartbeat per generation for the workers that beat since the last one, once the
  // interval since the first of them has passed; returns when to call again.
  absl::Time BeatUpstream(absl::Time now);
  void SendBeat(int64_t generation, std::vector<std::pair<std::string, Beat>> beats,
                absl::Duration interval, bool split_on_error);
  // The reply's outcome ends `generation` for this host: the held calls go to the coordinator.
  void ObserveOutcome(const v1::Outcome& outcome, int64_t generation);
  template <typename Request, typename Reply, typename Call, typename OnOk>
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* ctx, const Request* request,
                                    Reply* reply, Call call, OnOk on_ok);

  const std::unique_ptr<v1::Coordinator::Stub> stub_;
  const std::string token_;
  const absl::Duration window_;
  // The host's barrier calls go up over one stream (NextRoundsStream), not one call each.
  BarrierStream barrier_stream_;

  mutable absl::Mutex mu_;
  BarrierCoalescer coalescer_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, BarrierCall> calls_ ABSL_GUARDED_BY(mu_);  // by arrival id
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Upstream calls in flight (their callbacks own them), for Shutdown to cancel.
  std::map<grpc::ClientContext*, std::weak_ptr<grpc::ClientContext>> in_flight_
      ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // Heartbeats: the local workers that beat since the last upstream beat (by worker id), when the
  // next upstream beat is due, the interval (from the Join replies), the last outcome the
  // coordinator gave each generation (what local beats are answered), and refusals of single
  // workers' beats, to hand to each once.
  std::map<std::string, Beat> beats_ ABSL_GUARDED_BY(mu_);
  absl::Time next_beat_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  std::map<int64_t, v1::Outcome> outcomes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, grpc::Status> refused_beats_ ABSL_GUARDED_BY(mu_);
  // Reports held for a batch, and when the first of them came.
  std::vector<HeldReport> held_reports_ ABSL_GUARDED_BY(mu_);
  absl::Time reports_since_ ABSL_GUARDED_BY(mu_);
  // Bumped whenever the flusher's next expiry may have moved earlier.
  int64_t work_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<int64_t> barrier_calls_{0};
  std::atomic<int64_t> upstream_barrier_calls_{0};
  std::atomic<int64_t> forwarded_calls_{0};
  std::atomic<int64_t> superseded_{0};
  std::atomic<int64_t> local_heartbeats_{0};
  std::atomic<int64_t> upstream_heartbeats_{0};
  std::atomic<int64_t> local_reports_{0};
  std::atomic<int64_t> upstream_report_batches_{0};
};

}  // namespace qsr

#endif  // QSR_AGENT_AGENT_SERVICE_H_
