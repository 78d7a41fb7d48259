#include "client/ops_client.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace qsr {

absl::Status DescribeRpcError(const std::string& address, const std::string& method,
                              const absl::Status& status, absl::Duration timeout) {
  const std::string detail(status.message());
  std::string what;
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
      what = absl::StrCat("unreachable (", detail.empty() ? "no answer" : detail,
                          "); is qsr-coordinator running there, and is the address right?");
      break;
    case absl::StatusCode::kDeadlineExceeded:
      what = absl::StrCat("no answer within ", absl::FormatDuration(timeout));
      break;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      what = absl::StrCat("refused: wrong or missing token (", detail, ")");
      break;
    case absl::StatusCode::kNotFound:
      what = absl::StrCat("no such run (", detail, ")");
      break;
    case absl::StatusCode::kUnimplemented:
      what = "not supported by this coordinator (an older version?)";
      break;
    default:
      what = absl::StrCat(absl::StatusCodeToString(status.code()), ": ", detail);
  }
  return absl::Status(status.code(),
                      absl::StrFormat("coordinator at %s: %s: %s", address, method, what));
}

OpsClient::OpsClient(std::string address)
    : OpsClient(address, grpc::CreateChannel(address, grpc::InsecureChannelCredentials()), "") {}

OpsClient::OpsClient(std::string address, std::shared_ptr<grpc::Channel> channel, std::string token)
    : address_(std::move(address)),
      stub_(v1::Coordinator::NewStub(channel)),
      token_(std::move(token)) {}

absl::StatusOr<std::unique_ptr<OpsClient>> OpsClient::Create(std::string address,
                                                             const ClientSecurity& security) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(address, security);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<OpsClient>(
      new OpsClient(std::move(address), std::move(*channel), security.token));
}

template <typename Request, typename Reply>
absl::StatusOr<Reply> OpsClient::Call(
    const char* name,
    grpc::Status (v1::Coordinator::Stub::*method)(grpc::ClientContext*, const Request&, Reply*),
    const Request& request, absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  AttachToken(token_, &ctx);
  Reply reply;
  grpc::Status s = (stub_.get()->*method)(&ctx, request, &reply);
  if (!s.ok()) {
    return DescribeRpcError(
        address_, name,
        absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message()), timeout);
  }
  return reply;
}

absl::StatusOr<v1::GetStatusReply> OpsClient::GetStatus(absl::Duration timeout) {
  return Call("GetStatus", &v1::Coordinator::Stub::GetStatus, v1::GetStatusRequest(), timeout);
}

absl::StatusOr<v1::ListRoundsReply> OpsClient::ListRounds(const v1::ListRoundsRequest& request,
                                                          absl::Duration timeout) {
  return Call("ListRounds", &v1::Coordinator::Stub::ListRounds, request, timeout);
}

absl::StatusOr<v1::ListEvalsReply> OpsClient::ListEvals(absl::Duration timeout) {
  return Call("ListEvals", &v1::Coordinator::Stub::ListEvals, v1::ListEvalsRequest(), timeout);
}

absl::StatusOr<v1::StopReply> OpsClient::Stop(const v1::StopRequest& request,
                                              absl::Duration timeout) {
  return Call("Stop", &v1::Coordinator::Stub::Stop, request, timeout);
}

}  // namespace qsr
