// BarrierStream: the agent's end of Coordinator.NextRoundsStream. It sends the host's barrier
// calls over one long-lived stream instead of one unary call each, and matches the answers to
// their calls by id.
//
// Call() opens the stream when none is open (lazily, and again after one has ended). Each call's
// `done` runs exactly once, never under a lock of this class:
//   - with the coordinator's answer (its status and reply, as a unary NextRounds would end);
//   - with DEADLINE_EXCEEDED from Expire() once its deadline has passed;
//   - with UNAVAILABLE when its stream ends, or at once after Shutdown(). Workers retry that.
//
// Thread-safe. Lifecycle: Shutdown() cancels the open stream, then AwaitIdle() waits until every
// stream's callbacks have run; only then may the object be destroyed.
#ifndef QSR_AGENT_BARRIER_STREAM_H_
#define QSR_AGENT_BARRIER_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "qsr/v1/coordinator.grpc.pb.h"

namespace qsr {

class BarrierStream {
 public:
  using Done = std::function<void(const grpc::Status&, const v1::NextRoundsReply&)>;

  // `stub` must outlive this object; `token` (may be empty) goes with every stream.
  BarrierStream(v1::Coordinator::Stub* stub, std::string token);
  ~BarrierStream();

  void Call(const v1::NextRoundsRequest& request, absl::Time deadline, Done done);
  // Fails the calls whose deadline is before `now`; returns the earliest deadline left.
  absl::Time Expire(absl::Time now);
  void Shutdown();
  bool AwaitIdle(absl::Time deadline);
  // Streams opened so far (for tests and counters).
  int64_t streams_opened() const;

 private:
  class Reactor;
  struct Pending {
    absl::Time deadline;
    Done done;
    Reactor* on;  // the stream it was sent on
  };

  // From a Reactor's reactions.
  void Answered(const v1::NextRoundsAnswer& answer);
  void Ended(Reactor* reactor, const grpc::Status& status);

  v1::Coordinator::Stub* const stub_;
  const std::string token_;
  mutable absl::Mutex mu_;
  std::shared_ptr<Reactor> current_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int live_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t opened_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace qsr

#endif  // QSR_AGENT_BARRIER_STREAM_H_
