// OpsClient: the operator's side of the coordinator (qsrctl, qsr-run): status, rounds, evaluations,
// stop. The only client of those calls; a worker's calls are CoordinatorClient's.
//
// Every call has a deadline. A failed call comes back as a Status whose message names the
// coordinator's address, the call, and what went wrong in words an operator can act on
// (unreachable, no answer in time, wrong or missing token, no such run, an older coordinator).
//
// Thread-safe (gRPC stubs are).
#ifndef QSR_CLIENT_OPS_CLIENT_H_
#define QSR_CLIENT_OPS_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/connection_security.h"
#include "qsr/v1/coordinator.grpc.pb.h"

namespace qsr {

class OpsClient {
 public:
  // Connects lazily to `address` (HOST:PORT), insecure and without a token: errors show on the
  // first call.
  explicit OpsClient(std::string address);
  // With TLS and the token from `security`; unreadable TLS files are an error here.
  static absl::StatusOr<std::unique_ptr<OpsClient>> Create(std::string address,
                                                           const ClientSecurity& security);

  const std::string& address() const { return address_; }

  absl::StatusOr<v1::GetStatusReply> GetStatus(absl::Duration timeout);
  absl::StatusOr<v1::ListRoundsReply> ListRounds(const v1::ListRoundsRequest& request,
                                                 absl::Duration timeout);
  absl::StatusOr<v1::ListEvalsReply> ListEvals(absl::Duration timeout);
  absl::StatusOr<v1::StopReply> Stop(const v1::StopRequest& request, absl::Duration timeout);

 private:
  OpsClient(std::string address, std::shared_ptr<grpc::Channel> channel, std::string token);
  // One unary call of the stub's `method` with `timeout`, the token attached; an error is
  // described for this address and `name` (DescribeRpcError).
  template <typename Request, typename Reply>
  absl::StatusOr<Reply> Call(const char* name,
                             grpc::Status (v1::Coordinator::Stub::*method)(grpc::ClientContext*,
                                                                           const Request&, Reply*),
                             const Request& request, absl::Duration timeout);

  std::string address_;
  std::unique_ptr<v1::Coordinator::Stub> stub_;
  std::string token_;
};

// The Status an operator reads for a failed call `method` to the coordinator at `address`: same
// code, message "coordinator at ADDRESS: METHOD: <what failed>".
absl::Status DescribeRpcError(const std::string& address, const std::string& method,
                              const absl::Status& status, absl::Duration timeout);

}  // namespace qsr

#endif  // QSR_CLIENT_OPS_CLIENT_H_
