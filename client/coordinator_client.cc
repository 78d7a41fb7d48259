#include "client/coordinator_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/backoff.h"
#include "glog/logging.h"

namespace qsr {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const std::string& method) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("coordinator ", method, ": ", s.error_message()));
}

class GrpcCoordinatorClient : public CoordinatorClient {
 public:
  GrpcCoordinatorClient(std::shared_ptr<grpc::Channel> channel, std::string token)
      : channel_(std::move(channel)),
        stub_(v1::Coordinator::NewStub(channel_)),
        token_(std::move(token)) {}

  template <typename Req, typename Rep, typename Method>
  absl::StatusOr<Rep> Call(Method method, const char* name, const Req& request,
                           absl::Time deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    AttachToken(token_, &ctx);
    Rep reply;
    grpc::Status s = (stub_.get()->*method)(&ctx, request, &reply);
    if (!s.ok()) return FromGrpc(s, name);
    return reply;
  }

  absl::StatusOr<v1::JoinReply> Join(const v1::JoinRequest& r, absl::Time d) override {
    return Call<v1::JoinRequest, v1::JoinReply>(&v1::Coordinator::Stub::Join, "Join", r, d);
  }
  absl::StatusOr<v1::NextRoundsReply> NextRounds(const v1::NextRoundsRequest& r,
                                                 absl::Time d) override {
    return Call<v1::NextRoundsRequest, v1::NextRoundsReply>(&v1::Coordinator::Stub::NextRounds,
                                                            "NextRounds", r, d);
  }
  absl::StatusOr<v1::ReportReply> Report(const v1::ReportRequest& r, absl::Time d) override {
    return Call<v1::ReportRequest, v1::ReportReply>(&v1::Coordinator::Stub::Report, "Report", r, d);
  }
  absl::StatusOr<v1::LeaveReply> Leave(const v1::LeaveRequest& r, absl::Time d) override {
    return Call<v1::LeaveRequest, v1::LeaveReply>(&v1::Coordinator::Stub::Leave, "Leave", r, d);
  }
  absl::StatusOr<v1::HeartbeatReply> Heartbeat(const v1::HeartbeatRequest& r,
                                               absl::Time d) override {
    return Call<v1::HeartbeatRequest, v1::HeartbeatReply>(&v1::Coordinator::Stub::Heartbeat,
                                                          "Heartbeat", r, d);
  }
  absl::StatusOr<v1::KvSetReply> KvSet(const v1::KvSetRequest& r, absl::Time d) override {
    return Call<v1::KvSetRequest, v1::KvSetReply>(&v1::Coordinator::Stub::KvSet, "KvSet", r, d);
  }
  absl::StatusOr<v1::KvGetReply> KvGet(const v1::KvGetRequest& r, absl::Time d) override {
    return Call<v1::KvGetRequest, v1::KvGetReply>(&v1::Coordinator::Stub::KvGet, "KvGet", r, d);
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  const std::string token_;
};

grpc::ChannelArguments ClientChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return args;
}

}  // namespace

absl::StatusOr<v1::JoinReply> JoinWithRetry(CoordinatorClient* client,
                                            const v1::JoinRequest& request,
                                            absl::Duration timeout) {
  // While the coordinator is not up yet: 50 ms doubling to 2 s between tries.
  constexpr BackoffPolicy kUnreachable{absl::Milliseconds(50), absl::Seconds(2)};
  const absl::Time deadline = absl::Now() + timeout;
  int failures = 0;
  while (true) {
    absl::StatusOr<v1::JoinReply> reply =
        client->Join(request, std::min(deadline, absl::Now() + absl::Seconds(12)));
    if (reply.ok() && reply->outcome().code() == v1::Outcome::TIMEOUT && absl::Now() < deadline) {
      failures = 0;
      continue;  // the poll ended before the generation formed: ask again
    }
    const bool unreachable = !reply.ok() && (absl::IsUnavailable(reply.status()) ||
                                             absl::IsDeadlineExceeded(reply.status()));
    const absl::Duration wait = BackoffDelay(kUnreachable, failures++);
    if (!unreachable || absl::Now() + wait > deadline) return reply;
    absl::SleepFor(wait);
  }
}

std::unique_ptr<CoordinatorClient> NewGrpcCoordinatorClient(const std::string& address) {
  // Without TLS files there is nothing that can fail to load.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakeChannel(address, ClientSecurity(), ClientChannelArgs());
  CHECK(channel.ok()) << channel.status();
  return std::make_unique<GrpcCoordinatorClient>(std::move(*channel), "");
}

absl::StatusOr<std::unique_ptr<CoordinatorClient>> NewGrpcCoordinatorClient(
    const std::string& address, const ClientSecurity& security) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakeChannel(address, security, ClientChannelArgs());
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<CoordinatorClient>(
      std::make_unique<GrpcCoordinatorClient>(std::move(*channel), security.token));
}

absl::Status CoordinatorStore::Set(const std::string& key, const std::string& value) {
  v1::KvSetRequest request;
  request.set_key(key);
  request.set_value(value);
  return client_->KvSet(request, absl::Now() + absl::Seconds(30)).status();
}

absl::StatusOr<std::vector<std::string>> CoordinatorStore::Get(const std::vector<std::string>& keys,
                                                               absl::Time deadline) {
  v1::KvGetRequest request;
  for (const auto& k : keys) request.add_keys(k);
  int64_t wait_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
  request.set_timeout_ms(wait_ms);
  // The RPC's own deadline leaves the coordinator time to answer TIMEOUT itself.
  absl::StatusOr<v1::KvGetReply> reply = client_->KvGet(request, deadline + absl::Seconds(5));
  if (!reply.ok()) return reply.status();
  if (reply->outcome().code() != v1::Outcome::OK) {
    return absl::DeadlineExceededError(reply->outcome().message());
  }
  if (reply->values_size() != static_cast<int>(keys.size())) {
    return absl::InternalError("coordinator KvGet returned the wrong number of values");
  }
  return std::vector<std::string>(reply->values().begin(), reply->values().end());
}

}  // namespace qsr
