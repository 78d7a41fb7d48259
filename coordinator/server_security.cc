#include "coordinator/server_security.h"

#include "client/connection_security.h"

namespace qsr {

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurity& security) {
  if (!security.UsesTls()) {
    if (!security.tls_client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key (the coordinator's own certificate)");
    }
    return grpc::InsecureServerCredentials();
  }
  if (security.tls_cert.empty() || security.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  absl::StatusOr<std::string> cert = ReadPemFile("tls-cert", security.tls_cert, "CERTIFICATE");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemFile("tls-key", security.tls_key, "PRIVATE KEY");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!security.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca =
        ReadPemFile("tls-client-ca", security.tls_client_ca, "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  options.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(options);
}

}  // namespace qsr
