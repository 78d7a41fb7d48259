// NextRoundsStream: the server side of Coordinator.NextRoundsStream (see the proto), one object
// per open stream: reads NextRoundsCalls, hands each to the RunController as a unary NextRounds
// would be handed, and writes the answers in the order they become ready.
//
// Lifecycle: created by CoordinatorService for each stream; deletes itself in OnDone. Barrier
// callbacks may outlive it (a stream that closed while its calls waited at the barrier): they
// reach it only through `Shared`, which says when it is gone, and are then dropped.
//
// Thread-safe: gRPC's reactions and the controller's callbacks (any thread) meet under Shared's
// lock; at most one write is outstanding.
#ifndef QSR_COORDINATOR_NEXT_ROUNDS_STREAM_H_
#define QSR_COORDINATOR_NEXT_ROUNDS_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/run_controller.h"
#include "qsr/v1/coordinator.grpc.pb.h"

namespace qsr {

class NextRoundsStream final
    : public grpc::ServerBidiReactor<v1::NextRoundsCall, v1::NextRoundsAnswer> {
 public:
  // `refusal` not OK (a missing or wrong token): the stream ends at once with it.
  NextRoundsStream(RunController* controller, const absl::Status& refusal);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  // What the controller's callbacks share with the stream.
  struct Shared {
    absl::Mutex mu;
    NextRoundsStream* stream ABSL_GUARDED_BY(mu);  // null once the stream is done
    bool finishing ABSL_GUARDED_BY(mu) = false;    // Finish called or due: no more writes
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool reading ABSL_GUARDED_BY(mu) = true;
    std::deque<v1::NextRoundsAnswer> queue ABSL_GUARDED_BY(mu);
  };

  // What to ask of gRPC next. Decided under Shared's lock, done outside it: gRPC may run this
  // stream's reactions inline in StartWrite or Finish, and they take the lock.
  enum class Action { kNone, kWrite, kFinish, kFinishBroken };

  // Queues `answer` and starts writing if no write is outstanding.
  static void Send(const std::shared_ptr<Shared>& shared, v1::NextRoundsAnswer answer);
  // The next queued answer to write, or finishing once reading has ended.
  Action NextAction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_->mu);
  void Act(Action action);

  RunController* const controller_;
  const std::shared_ptr<Shared> shared_;
  v1::NextRoundsCall call_;      // the read in progress
  v1::NextRoundsAnswer answer_;  // the write in progress
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_NEXT_ROUNDS_STREAM_H_
