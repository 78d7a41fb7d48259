// CoordinatorClient: how a worker talks to its coordinator (the operator's calls are OpsClient's,
// ops_client.h).
//
// An interface so the trainer can be tested against a fake (tests/client/fake_coordinator.h);
// GrpcCoordinatorClient is the real one. Every call carries a deadline. A transport failure or an
// error status from the coordinator comes back as a non-OK Status; an understood request returns
// the reply, whose `outcome` carries the application result.
//
// Thread-safe (gRPC stubs are).
#ifndef QSR_CLIENT_COORDINATOR_CLIENT_H_
#define QSR_CLIENT_COORDINATOR_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/connection_security.h"
#include "rendezvous/store.h"
#include "qsr/v1/coordinator.grpc.pb.h"

namespace qsr {

class CoordinatorClient {
 public:
  virtual ~CoordinatorClient() = default;
  virtual absl::StatusOr<v1::JoinReply> Join(const v1::JoinRequest& request,
                                             absl::Time deadline) = 0;
  virtual absl::StatusOr<v1::NextRoundsReply> NextRounds(const v1::NextRoundsRequest& request,
                                                         absl::Time deadline) = 0;
  virtual absl::StatusOr<v1::ReportReply> Report(const v1::ReportRequest& request,
                                                 absl::Time deadline) = 0;
  virtual absl::StatusOr<v1::LeaveReply> Leave(const v1::LeaveRequest& request,
                                               absl::Time deadline) = 0;
  virtual absl::StatusOr<v1::HeartbeatReply> Heartbeat(const v1::HeartbeatRequest& request,
                                                       absl::Time deadline) = 0;
  virtual absl::StatusOr<v1::KvSetReply> KvSet(const v1::KvSetRequest& request,
                                               absl::Time deadline) = 0;
  virtual absl::StatusOr<v1::KvGetReply> KvGet(const v1::KvGetRequest& request,
                                               absl::Time deadline) = 0;
};

// Connects to `address` (HOST:PORT), insecure and without a token. Connection is lazy: errors
// show on the first call.
std::unique_ptr<CoordinatorClient> NewGrpcCoordinatorClient(const std::string& address);
// With `security`'s TLS credentials, sending its token on every call. Errors: unreadable TLS
// files (connection_security.h); the connection itself is lazy.
absl::StatusOr<std::unique_ptr<CoordinatorClient>> NewGrpcCoordinatorClient(
    const std::string& address, const ClientSecurity& security);

// Join, asked again until `timeout` has passed while the coordinator is unreachable (UNAVAILABLE:
// not up yet, or restarting; with backoff) and while the generation has not formed (outcome
// TIMEOUT: the coordinator answers each poll within about 10 s). Any other error, and any other
// reply, is returned at once.
absl::StatusOr<v1::JoinReply> JoinWithRetry(CoordinatorClient* client,
                                            const v1::JoinRequest& request, absl::Duration timeout);

// A rendezvous Store backed by the coordinator's KvSet/KvGet.
class CoordinatorStore : public Store {
 public:
  explicit CoordinatorStore(CoordinatorClient* client) : client_(client) {}
  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::vector<std::string>> Get(const std::vector<std::string>& keys,
                                               absl::Time deadline) override;

 private:
  CoordinatorClient* client_;
};

}  // namespace qsr

#endif  // QSR_CLIENT_COORDINATOR_CLIENT_H_
