#include "client/connection_security.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace qsr {
namespace {

// PEM files larger than this are not certificates or keys.
constexpr size_t kMaxPemBytes = 1 << 20;

absl::StatusOr<std::string> ReadSmallFile(const std::string& flag, const std::string& path,
                                          size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("--", flag, " ", path, ": cannot open the file"));
  }
  std::string data;
  char buf[4096];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, in.gcount());
    if (data.size() > max_bytes) {
      return absl::FailedPreconditionError(
          absl::StrCat("--", flag, " ", path, ": larger than ", max_bytes, " bytes"));
    }
  }
  if (in.bad()) {
    return absl::FailedPreconditionError(absl::StrCat("--", flag, " ", path, ": read error"));
  }
  return data;
}

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path,
                                        const std::string& kind) {
  absl::StatusOr<std::string> pem = ReadSmallFile(flag, path, kMaxPemBytes);
  if (!pem.ok()) return pem.status();
  if (!absl::StrContains(*pem, "-----BEGIN ") || !absl::StrContains(*pem, kind + "-----")) {
    return absl::FailedPreconditionError(
        absl::StrCat("--", flag, " ", path, ": not a PEM file holding a ", kind));
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ClientSecurity& security) {
  if (!security.UsesTls()) return grpc::InsecureChannelCredentials();
  if (security.tls_cert.empty() != security.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  grpc::SslCredentialsOptions options;
  if (!security.tls_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile("tls-ca", security.tls_ca, "CERTIFICATE");
    if (!ca.ok()) return ca.status();
    options.pem_root_certs = *ca;
  }
  if (!security.tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile("tls-cert", security.tls_cert, "CERTIFICATE");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile("tls-key", security.tls_key, "PRIVATE KEY");
    if (!key.ok()) return key.status();
    options.pem_cert_chain = *cert;
    options.pem_private_key = *key;
  }
  return grpc::SslCredentials(options);
}

void SetCoordinatorReconnectBackoff(grpc::ChannelArguments& args) {
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also takes it as the least time a connection
  // attempt may take, and 100 ms cut handshakes with a coordinator that had just started on a
  // loaded machine ("tcp handshaker shutdown", again and again).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ClientSecurity& security,
                                                           grpc::ChannelArguments args) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeChannelCredentials(security);
  if (!creds.ok()) return creds.status();
  if (!security.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(security.tls_server_name);
  }
  SetCoordinatorReconnectBackoff(args);
  return grpc::CreateCustomChannel(address, *creds, args);
}

void AttachToken(const std::string& token, grpc::ClientContext* ctx) {
  if (!token.empty()) ctx->AddMetadata(kTokenMetadataKey, token);
}

absl::StatusOr<std::string> LoadToken(const std::string& token_file) {
  std::string token;
  std::string source;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> data = ReadSmallFile("token-file", token_file, 64 * 1024);
    if (!data.ok()) return data.status();
    token = std::string(absl::StripAsciiWhitespace(*data));
    source = "--token-file " + token_file;
  } else if (const char* env = std::getenv(kTokenEnvVar); env != nullptr) {
    token = std::string(absl::StripAsciiWhitespace(env));
    source = absl::StrCat("$", kTokenEnvVar);
    if (token.empty()) return std::string();  // set but empty: no token
  } else {
    return std::string();
  }
  if (token.empty()) return absl::InvalidArgumentError(source + ": the token is empty");
  if (token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the token is longer than ", kMaxTokenBytes, " bytes"));
  }
  for (char c : token) {
    // gRPC metadata values must be printable ASCII; no spaces, so that copying keeps it whole.
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          source +
          ": the token must be printable ASCII without spaces (for example the output "
          "of `openssl rand -hex 32`)");
    }
  }
  return token;
}

bool IsLoopbackListen(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const in6_addr kLoopback = IN6ADDR_LOOPBACK_INIT;
    return std::memcmp(&v6, &kLoopback, sizeof(v6)) == 0;
  }
  return false;  // a host name, or empty (every interface)
}

void AddClientSecurityFlags(FlagParser& flags) {
  flags.AddBool("tls", "connect with TLS, verifying the coordinator against the system's CAs");
  flags.Add("tls-ca", "", "PEM CA bundle that signed the coordinator's certificate (turns on TLS)");
  flags.Add("tls-cert", "", "this client's PEM certificate, for mutual TLS (with --tls-key)");
  flags.Add("tls-key", "", "this client's PEM private key, for mutual TLS");
  flags.Add("tls-server-name", "",
            "name to verify the coordinator's certificate against (default: the address's host)");
  flags.Add("token-file", "",
            "file holding the run's shared token (default: $QSR_TOKEN; never pass it as a value)");
}

absl::StatusOr<ClientSecurity> ClientSecurityFromFlags(const FlagParser& flags) {
  ClientSecurity security;
  security.tls = flags.GetBool("tls");
  security.tls_ca = flags.Get("tls-ca");
  security.tls_cert = flags.Get("tls-cert");
  security.tls_key = flags.Get("tls-key");
  security.tls_server_name = flags.Get("tls-server-name");
  absl::StatusOr<std::string> token = LoadToken(flags.Get("token-file"));
  if (!token.ok()) return token.status();
  security.token = std::move(*token);
  // Fail at start-up, not at the first call, on unreadable certificate files.
  if (absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
          MakeChannelCredentials(security);
      !creds.ok()) {
    return creds.status();
  }
  return security;
}

}  // namespace qsr
