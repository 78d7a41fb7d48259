#include "coordinator/coordinator_service.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "client/connection_security.h"
#include "coordinator/next_rounds_stream.h"
#include "coordinator/request_validator.h"

namespace qsr {
namespace {

// The longest one Join poll waits for the caller's generation to form.
constexpr absl::Duration kJoinPoll = absl::Seconds(10);

using Access = TokenGuard::Access;

// The call's reactor, finished at once with `status` (the reply, if any, already filled in).
grpc::ServerUnaryReactor* Finished(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// Finishes the call with `result`'s value copied into `reply`, or its error.
template <typename Reply>
grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* ctx, Reply* reply,
                                     absl::StatusOr<Reply> result) {
  if (!result.ok()) return Finished(ctx, ToGrpcStatus(result.status()));
  *reply = std::move(*result);
  return Finished(ctx, grpc::Status::OK);
}

// For a call answered later: `start(reactor)` hands the reactor on to whatever finishes it (a
// poll, the round barrier, a key wait); a status it returns that is not OK means nothing took it,
// and finishes the call with that error now.
template <typename Start>
grpc::ServerUnaryReactor* AnswerLater(grpc::CallbackServerContext* ctx, Start start) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (absl::Status s = start(reactor); !s.ok()) reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

// The answer callback of AnswerLater's controller calls: copies the answer into `reply` and
// finishes the call with OK.
template <typename Reply>
std::function<void(const Reply&)> ReplyInto(grpc::ServerUnaryReactor* reactor, Reply* reply) {
  return [reactor, reply](const Reply& answer) {
    *reply = answer;
    reactor->Finish(grpc::Status::OK);
  };
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
  return Finished(ctx, ToGrpcStatus(refusal));
}

grpc::ServerUnaryReactor* CoordinatorService::Join(grpc::CallbackServerContext* ctx,
                                                   const v1::JoinRequest* request,
                                                   v1::JoinReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateJoin(*request))) return r;
  const absl::Time now = absl::Now();
  absl::Time poll_deadline = now + kJoinPoll;
  const absl::Time client_deadline = absl::FromChrono(ctx->deadline());
  if (client_deadline - absl::Milliseconds(500) < poll_deadline) {
    poll_deadline = std::max(now, client_deadline - absl::Milliseconds(500));
  }
  return AnswerLater(ctx, [&](grpc::ServerUnaryReactor* reactor) {
    return controller_->Join(*request, now, poll_deadline, ReplyInto(reactor, reply));
  });
}

grpc::ServerUnaryReactor* CoordinatorService::NextRounds(grpc::CallbackServerContext* ctx,
                                                         const v1::NextRoundsRequest* request,
                                                         v1::NextRoundsReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateNextRounds(*request))) return r;
  return AnswerLater(ctx, [&](grpc::ServerUnaryReactor* reactor) {
    return controller_->NextRounds(*request, absl::Now(), ReplyInto(reactor, reply));
  });
}

grpc::ServerBidiReactor<v1::NextRoundsCall, v1::NextRoundsAnswer>*
CoordinatorService::NextRoundsStream(grpc::CallbackServerContext* ctx) {
  return new qsr::NextRoundsStream(controller_, CheckToken(ctx, Access::kChange));
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
  return Finished(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* CoordinatorService::KvSet(grpc::CallbackServerContext* ctx,
                                                    const v1::KvSetRequest* request,
                                                    v1::KvSetReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, absl::OkStatus())) return r;
  absl::Status s = store_->Set(request->key(), request->value());
  reply->mutable_outcome()->set_code(v1::Outcome::OK);
  return Finished(ctx, ToGrpcStatus(s));
}

grpc::ServerUnaryReactor* CoordinatorService::KvGet(grpc::CallbackServerContext* ctx,
                                                    const v1::KvGetRequest* request,
                                                    v1::KvGetReply* reply) {
  if (auto* r = Refuse(ctx, Access::kChange, ValidateKvGet(*request))) return r;
  std::vector<std::string> keys(request->keys().begin(), request->keys().end());
  const absl::Time deadline = absl::Now() + absl::Milliseconds(request->timeout_ms());
  return AnswerLater(ctx, [&](grpc::ServerUnaryReactor* reactor) {
    return store_->Get(
        std::move(keys), deadline,
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
  });
}

// The calls answered at once from one controller call, once the token (for the access named)
// and the request's validation pass.
#define QSR_ANSWER_NOW(Method, NeededAccess, Validation, Answer)                           \
  grpc::ServerUnaryReactor* CoordinatorService::Method(grpc::CallbackServerContext* ctx,   \
                                                       const v1::Method##Request* request, \
                                                       v1::Method##Reply* reply) {         \
    (void)request; /* some answers need no request */                                      \
    if (auto* r = Refuse(ctx, NeededAccess, Validation)) return r;                         \
    return FinishWith(ctx, reply, absl::StatusOr<v1::Method##Reply>(Answer));              \
  }
QSR_ANSWER_NOW(Heartbeat, Access::kChange, ValidateHeartbeat(*request),
               controller_->Heartbeat(*request, absl::Now()))
QSR_ANSWER_NOW(Report, Access::kChange, ValidateReport(*request),
               controller_->Report(*request, absl::Now()))
QSR_ANSWER_NOW(Leave, Access::kChange, ValidateLeave(*request),
               controller_->Leave(*request, absl::Now()))
QSR_ANSWER_NOW(Stop, Access::kChange, ValidateStop(*request), controller_->Stop(*request))
QSR_ANSWER_NOW(GetStatus, Access::kRead, absl::OkStatus(), controller_->Status(absl::Now()))
QSR_ANSWER_NOW(ListRounds, Access::kRead, ValidateListRounds(*request),
               controller_->Rounds(*request))
QSR_ANSWER_NOW(ListEvals, Access::kRead, absl::OkStatus(), controller_->Evals())
#undef QSR_ANSWER_NOW

}  // namespace qsr
