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

  // One unary call: the deadline and the token set, the error named by `name`. The request and
  // reply types come from `method`.
  template <typename Req, typename Rep>
  absl::StatusOr<Rep> Call(grpc::Status (v1::Coordinator::Stub::*method)(grpc::ClientContext*,
                                                                         const Req&, Rep*),
                           const char* name, const Req& request, absl::Time deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    AttachToken(token_, &ctx);
    Rep reply;
    grpc::Status s = (stub_.get()->*method)(&ctx, request, &reply);
    if (!s.ok()) return FromGrpc(s, name);
    return reply;
  }

// Each CoordinatorClient method is the stub's method of the same name, through Call.
#define QSR_COORDINATOR_CALL(Method)                                           \
  absl::StatusOr<v1::Method##Reply> Method(const v1::Method##Request& request, \
                                           absl::Time deadline) override {     \
    return Call(&v1::Coordinator::Stub::Method, #Method, request, deadline);   \
  }
  QSR_COORDINATOR_CALL(Join)
  QSR_COORDINATOR_CALL(NextRounds)
  QSR_COORDINATOR_CALL(Report)
  QSR_COORDINATOR_CALL(Leave)
  QSR_COORDINATOR_CALL(Heartbeat)
  QSR_COORDINATOR_CALL(KvSet)
  QSR_COORDINATOR_CALL(KvGet)
#undef QSR_COORDINATOR_CALL

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
