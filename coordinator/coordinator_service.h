// CoordinatorService: the qsr.v1.Coordinator gRPC service (callback API).
//
// A thin translation layer: each handler first checks the call's token (TokenGuard:
// UNAUTHENTICATED) and the request's field bounds (request_validator.h: INVALID_ARGUMENT), then
// hands the request to the RunController (membership, barrier, reports) or the KvStore
// (rendezvous), maps an error Status to the gRPC status, and finishes the reactor. Waiting handlers
// (NextRounds, KvGet) keep their reactor and finish it from the callback, so no gRPC thread ever
// blocks; NextRoundsStream does the same per message (next_rounds_stream.h). Join is a long poll:
// it waits for the caller's generation to form, and answers TIMEOUT shortly before the caller's
// deadline (at most kJoinPoll) so that the worker asks again rather than seeing its call fail.
//
// Thread-safe; the controller, store and guard it points to must outlive it.
#ifndef QSR_COORDINATOR_COORDINATOR_SERVICE_H_
#define QSR_COORDINATOR_COORDINATOR_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "coordinator/kv_store.h"
#include "coordinator/run_controller.h"
#include "coordinator/token_guard.h"
#include "qsr/v1/coordinator.grpc.pb.h"

namespace qsr {

// absl::Status -> grpc::Status, keeping the code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

class CoordinatorService final : public v1::Coordinator::CallbackService {
 public:
  // `guard` null: no token required.
  CoordinatorService(RunController* controller, KvStore* store, const TokenGuard* guard = nullptr)
      : controller_(controller), store_(store), guard_(guard) {}

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const v1::JoinRequest* request,
                                 v1::JoinReply* reply) override;
  grpc::ServerUnaryReactor* NextRounds(grpc::CallbackServerContext* ctx,
                                       const v1::NextRoundsRequest* request,
                                       v1::NextRoundsReply* reply) override;
  // One NextRoundsStream per stream (it deletes itself when done).
  grpc::ServerBidiReactor<v1::NextRoundsCall, v1::NextRoundsAnswer>* NextRoundsStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* ctx,
                                   const v1::ReportRequest* request,
                                   v1::ReportReply* reply) override;
  grpc::ServerUnaryReactor* ReportBatch(grpc::CallbackServerContext* ctx,
                                        const v1::ReportBatchRequest* request,
                                        v1::ReportBatchReply* reply) override;
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
  // The call's token, checked for `access` (UNAUTHENTICATED when missing or wrong).
  absl::Status CheckToken(grpc::CallbackServerContext* ctx, TokenGuard::Access access) const;
  // The call's token and `validation` checked: null when the call may go on, else a reactor
  // already finished with the refusal.
  grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* ctx, TokenGuard::Access access,
                                   const absl::Status& validation) const;

  RunController* controller_;
  KvStore* store_;
  const TokenGuard* guard_;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_COORDINATOR_SERVICE_H_
