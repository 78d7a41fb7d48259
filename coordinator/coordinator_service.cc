#include "coordinator/coordinator_service.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "client/connection_security.h"
#include "coordinator/next_rounds_stream.h"
#include "coordinator/request_validator.h"

namespace qsr {
namespace {

// The longest one Join poll waits for the caller's generation to form.
constexpr absl::Duration kJoinPoll = absl::Seconds(10);

using Access = TokenGuard::Access;

// Finishes `reactor` with `result`'s value copied into `reply`, or its error.
template <typename Reply>
grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* ctx, Reply* reply,
                                     absl::StatusOr<Reply> result) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (result.ok()) {
    *reply = std::move(*result);
    reactor->Finish(grpc::Status::OK);
  } else {
    reactor->Finish(ToGrpcStatus(result.status()));
  }
  return reactor;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status CoordinatorService::CheckToken(grpc::CallbackServerContext* ctx, Access access) const {
  if (guard_ == nullptr || !guard_->enabled()) return absl::OkStatus();
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find(kTokenMetadataKey);
  absl::string_view presented;
  if (it != metadata.end()) presented = absl::string_view(it->second.data(), it->second.size());
  return guard_->Check(it == metadata.end() ? nullptr : &presented, access);
}

grpc::ServerUnaryReactor* CoordinatorService::Refuse(grpc::CallbackServerContext* ctx,
                                                     Access access,
                                                     const absl::Status& validation) const {
  absl::Status refusal = CheckToken(ctx, access);
  if (refusal.ok()) refusal = validation;
  if (refusal.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(refusal));
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::Join(grpc::CallbackServerContext* ctx,
                                                   const v1::JoinRequest* request,
                                                   v1::JoinReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateJoin(*request))) return r;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const absl::Time now = absl::Now();
  absl::Time poll_deadline = now + kJoinPoll;
  const absl::Time client_deadline = absl::FromChrono(ctx->deadline());
  if (client_deadline - absl::Milliseconds(500) < poll_deadline) {
    poll_deadline = std::max(now, client_deadline - absl::Milliseconds(500));
  }
  absl::Status s =
      controller_->Join(*request, now, poll_deadline, [reactor, reply](const v1::JoinReply& r) {
        *reply = r;
        reactor->Finish(grpc::Status::OK);
      });
  if (!s.ok()) reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                        const v1::HeartbeatRequest* request,
                                                        v1::HeartbeatReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateHeartbeat(*request))) return r;
  return FinishWith(ctx, reply, controller_->Heartbeat(*request, absl::Now()));
}

grpc::ServerUnaryReactor* CoordinatorService::NextRounds(grpc::CallbackServerContext* ctx,
                                                         const v1::NextRoundsRequest* request,
                                                         v1::NextRoundsReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateNextRounds(*request))) return r;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status s = controller_->NextRounds(*request, absl::Now(),
                                           [reactor, reply](const v1::NextRoundsReply& r) {
                                             *reply = r;
                                             reactor->Finish(grpc::Status::OK);
                                           });
  if (!s.ok()) reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerBidiReactor<v1::NextRoundsCall, v1::NextRoundsAnswer>*
CoordinatorService::NextRoundsStream(grpc::CallbackServerContext* ctx) {
  return new qsr::NextRoundsStream(controller_, CheckToken(ctx, Access::kChange));
}

grpc::ServerUnaryReactor* CoordinatorService::Report(grpc::CallbackServerContext* ctx,
                                                     const v1::ReportRequest* request,
                                                     v1::ReportReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateReport(*request))) return r;
  return FinishWith(ctx, reply, controller_->Report(*request, absl::Now()));
}

grpc::ServerUnaryReactor* CoordinatorService::ReportBatch(grpc::CallbackServerContext* ctx,
                                                          const v1::ReportBatchRequest* request,
                                                          v1::ReportBatchReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateReportBatch(*request))) return r;
  const absl::Time now = absl::Now();
  for (const v1::ReportRequest& report : request->reports()) {
    v1::ReportResult* result = reply->add_results();
    absl::Status s = ValidateReport(report);
    if (s.ok()) {
      absl::StatusOr<v1::ReportReply> one = controller_->Report(report, now);
      if (one.ok()) {
        *result->mutable_reply() = std::move(*one);
      } else {
        s = one.status();
      }
    }
    result->set_status_code(static_cast<int>(s.code()));
    result->set_status_message(std::string(s.message()));
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::Leave(grpc::CallbackServerContext* ctx,
                                                    const v1::LeaveRequest* request,
                                                    v1::LeaveReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateLeave(*request))) return r;
  return FinishWith(ctx, reply, controller_->Leave(*request, absl::Now()));
}

grpc::ServerUnaryReactor* CoordinatorService::KvSet(grpc::CallbackServerContext* ctx,
                                                    const v1::KvSetRequest* request,
                                                    v1::KvSetReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, absl::OkStatus())) return r;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status s = store_->Set(request->key(), request->value());
  reply->mutable_outcome()->set_code(v1::Outcome::OK);
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::KvGet(grpc::CallbackServerContext* ctx,
                                                    const v1::KvGetRequest* request,
                                                    v1::KvGetReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateKvGet(*request))) return r;
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  std::vector<std::string> keys(request->keys().begin(), request->keys().end());
  absl::Status s =
      store_->Get(std::move(keys), absl::Now() + absl::Milliseconds(request->timeout_ms()),
                  [reactor, reply](absl::StatusOr<std::vector<std::string>> values) {
                    if (values.ok()) {
                      reply->mutable_outcome()->set_code(v1::Outcome::OK);
                      for (auto& v : *values) reply->add_values(std::move(v));
                    } else {
                      reply->mutable_outcome()->set_code(v1::Outcome::TIMEOUT);
                      reply->mutable_outcome()->set_message(std::string(values.status().message()));
                    }
                    reactor->Finish(grpc::Status::OK);
                  });
  if (!s.ok()) reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* CoordinatorService::GetStatus(grpc::CallbackServerContext* ctx,
                                                        const v1::GetStatusRequest*,
                                                        v1::GetStatusReply* reply) {
  if (auto* r = Refuse(ctx, Access::kRead, absl::OkStatus())) return r;
  return FinishWith(ctx, reply,
                    absl::StatusOr<v1::GetStatusReply>(controller_->Status(absl::Now())));
}

grpc::ServerUnaryReactor* CoordinatorService::ListRounds(grpc::CallbackServerContext* ctx,
                                                         const v1::ListRoundsRequest* request,
                                                         v1::ListRoundsReply* reply) {
  if (auto* r = Refuse(ctx, Access::kRead, ValidateListRounds(*request))) return r;
  return FinishWith(ctx, reply, absl::StatusOr<v1::ListRoundsReply>(controller_->Rounds(*request)));
}

grpc::ServerUnaryReactor* CoordinatorService::ListEvals(grpc::CallbackServerContext* ctx,
                                                        const v1::ListEvalsRequest*,
                                                        v1::ListEvalsReply* reply) {
  if (auto* r = Refuse(ctx, Access::kRead, absl::OkStatus())) return r;
  return FinishWith(ctx, reply, absl::StatusOr<v1::ListEvalsReply>(controller_->Evals()));
}

grpc::ServerUnaryReactor* CoordinatorService::Stop(grpc::CallbackServerContext* ctx,
                                                   const v1::StopRequest* request,
                                                   v1::StopReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateStop(*request))) return r;
  return FinishWith(ctx, reply, absl::StatusOr<v1::StopReply>(controller_->Stop(*request)));
}

}  // namespace qsr
