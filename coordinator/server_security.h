// Connection security for the coordinator's side: the TLS (and mutual TLS) server credentials
// from PEM files, and the run token its callers must send. The clients' side (channel
// credentials, the token's file and environment variable, its metadata key) is
// client/connection_security.h.
//
// Functions are thread-compatible (they read files); the credential objects they return are
// thread-safe (gRPC's).
#ifndef QSR_COORDINATOR_SERVER_SECURITY_H_
#define QSR_COORDINATOR_SERVER_SECURITY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace qsr {

// How the coordinator serves.
struct ServerSecurity {
  // TLS when `tls_cert` and `tls_key` (PEM files) are given. With `tls_client_ca`, every client
  // must present a certificate signed by it (mutual TLS).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Required from callers of Join, the worker calls, KvSet/KvGet and Stop; empty: open.
  std::string token;
  // Also require the token for GetStatus, ListRounds and ListEvals.
  bool token_protect_reads = false;

  bool UsesTls() const { return !tls_cert.empty() || !tls_key.empty(); }
};

// Server credentials: insecure without TLS files, else SSL. INVALID_ARGUMENT for a cert without
// a key (or the reverse), or a client CA without a server certificate; NOT_FOUND /
// FAILED_PRECONDITION naming the flag and the file when one cannot be read or is not PEM.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurity& security);

}  // namespace qsr

#endif  // QSR_COORDINATOR_SERVER_SECURITY_H_
