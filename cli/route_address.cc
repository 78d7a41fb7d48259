#include "cli/route_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

struct AddrInfo {
  addrinfo* list = nullptr;
  ~AddrInfo() {
    if (list) ::freeaddrinfo(list);
  }
};

absl::Status Resolve(const std::string& host, int port, AddrInfo* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  const std::string service = absl::StrCat(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &out->list);
  if (rc != 0 || out->list == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("host \"", host, "\" does not resolve: ", ::gai_strerror(rc)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  std::string h = colon == std::string::npos ? "" : address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int p = 0;
  if (h.empty() || !absl::SimpleAtoi(address.substr(colon + 1), &p) || p < 1 || p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\" is not HOST:PORT with a port from 1 to 65535"));
  }
  *host = h;
  *port = p;
  return absl::OkStatus();
}

absl::StatusOr<std::string> LocalAddressTowards(const std::string& address) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitHostPort(address, &host, &port); !s.ok()) return s;
  AddrInfo ai;
  if (absl::Status s = Resolve(host, port, &ai); !s.ok()) return s;
  std::string last_error;
  for (addrinfo* a = ai.list; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    ::close(fd);
    char text[INET6_ADDRSTRLEN] = {0};
    const void* raw =
        local.ss_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
    if (::inet_ntop(local.ss_family, raw, text, sizeof(text)) == nullptr) continue;
    return std::string(text);
  }
  return absl::UnavailableError(
      absl::StrCat("no route to ", address, last_error.empty() ? "" : ": " + last_error));
}

bool IsLoopbackHost(const std::string& host) {
  AddrInfo ai;
  if (!Resolve(host, 1, &ai).ok()) return false;
  for (addrinfo* a = ai.list; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const uint32_t ip = ntohl(reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr.s_addr);
      if ((ip >> 24) != 127) return false;
    } else if (a->ai_family == AF_INET6) {
      if (!IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr))
        return false;
    }
  }
  return true;
}

}  // namespace qsr
