// Connection security for the clients of the coordinator (and of a host agent): TLS (and mutual
// TLS) channel credentials from PEM files, and the shared run token that clients send as call
// metadata. The coordinator's own side (server credentials) is coordinator/server_security.h,
// which reads its PEM files and checks tokens with the helpers here.
//
// One place builds every client credential so that qsr-worker, qsrctl, qsr-run, qsr-agent and the
// qsr library agree on flags, file handling and error messages. Plain insecure loopback is the
// default (no flag given); TLS turns on with a certificate flag.
//
// The token is a secret: it is read from a file (--token-file) or the environment (QSR_TOKEN),
// never taken as a command-line value (where `ps` and logs would show it), and no function here
// puts it in a Status message.
//
// Functions are thread-compatible (they read files); the credential objects they return are
// thread-safe (gRPC's).
#ifndef QSR_CLIENT_CONNECTION_SECURITY_H_
#define QSR_CLIENT_CONNECTION_SECURITY_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/flags.h"

namespace qsr {

// The call metadata key that carries the run token.
inline constexpr char kTokenMetadataKey[] = "x-qsr-token";
// The environment variable a token may come from when no --token-file is given.
inline constexpr char kTokenEnvVar[] = "QSR_TOKEN";
// Longest accepted token, in bytes.
inline constexpr size_t kMaxTokenBytes = 4096;

// How a client (worker, qsrctl, qsr-run, the qsr library) reaches the coordinator.
struct ClientSecurity {
  // TLS: on when `tls` is set or any file is given. `tls_ca` is the PEM bundle that signed the
  // coordinator's certificate (empty: the system's roots). `tls_cert` + `tls_key` are this
  // client's certificate and key, for a coordinator that requires them (mutual TLS).
  bool tls = false;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // The name to verify the coordinator's certificate against, when it differs from the host in
  // the address (for example when connecting by IP). Empty: the address's host.
  std::string tls_server_name;
  // The run token (the secret itself, not a path); empty: none sent.
  std::string token;

  bool UsesTls() const { return tls || !tls_ca.empty() || !tls_cert.empty() || !tls_key.empty(); }
};

// Channel credentials for `security`: insecure without TLS, else SSL. INVALID_ARGUMENT for a
// cert without a key (or the reverse); NOT_FOUND / FAILED_PRECONDITION naming the flag and the file
// when one cannot be read or is not PEM.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientSecurity& security);

// Reconnect backoff for channels to a coordinator (or a host agent): 100 ms at first, at most
// 1 s, where gRPC's default starts at 1 s and grows to 2 minutes. A coordinator restarted on its
// state dir waits one regroup timeout for the previous members before it regroups without them
// (Membership::Recover); a worker whose channel is still backing off from the old process's
// death can miss that, and on a fast machine the rest of the run with it.
void SetCoordinatorReconnectBackoff(grpc::ChannelArguments& args);

// A channel to `address` (HOST:PORT) with `security`'s credentials and `args` (to which the
// server-name override and SetCoordinatorReconnectBackoff are added). Connects lazily.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ClientSecurity& security,
                                                           grpc::ChannelArguments args = {});

// Reads the PEM file `path`, given as --`flag`, and checks that it holds a block of `kind`
// ("CERTIFICATE", or "PRIVATE KEY", which also matches "RSA PRIVATE KEY" and "EC PRIVATE KEY").
// NOT_FOUND / FAILED_PRECONDITION naming the flag and the file when it cannot be read, is larger
// than 1 MiB or holds no such block. Shared with the coordinator's server credentials.
absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path,
                                        const std::string& kind);

// Adds the token (when non-empty) to a call's metadata.
void AttachToken(const std::string& token, grpc::ClientContext* ctx);

// The token from `token_file` when non-empty, else from $QSR_TOKEN, else "" (none). The file's
// trailing newline/whitespace is dropped. Errors name the file (never the contents): unreadable,
// empty, longer than kMaxTokenBytes, or holding bytes outside printable ASCII.
absl::StatusOr<std::string> LoadToken(const std::string& token_file);

// Whether `listen` (HOST:PORT) binds only the loopback interface (127.0.0.0/8, ::1, localhost).
bool IsLoopbackListen(const std::string& listen);

// The client flags every client binary shares: --tls, --tls-ca, --tls-cert, --tls-key,
// --tls-server-name, --token-file.
void AddClientSecurityFlags(FlagParser& flags);
// Reads them (and the token file or $QSR_TOKEN) into a ClientSecurity.
absl::StatusOr<ClientSecurity> ClientSecurityFromFlags(const FlagParser& flags);
}  // namespace qsr

#endif  // QSR_CLIENT_CONNECTION_SECURITY_H_
