// Test helpers: ServerSecurity / ClientSecurity from positional arguments, for the tests of
// connection security (unit and integration).
#ifndef QSR_TESTS_COORDINATOR_TEST_SECURITY_H_
#define QSR_TESTS_COORDINATOR_TEST_SECURITY_H_

#include <string>
#include <utility>

#include "client/connection_security.h"
#include "coordinator/server_security.h"

namespace qsr {

inline ServerSecurity Server(std::string cert, std::string key, std::string client_ca = "",
                             std::string token = "", bool protect_reads = false) {
  ServerSecurity s;
  s.tls_cert = std::move(cert);
  s.tls_key = std::move(key);
  s.tls_client_ca = std::move(client_ca);
  s.token = std::move(token);
  s.token_protect_reads = protect_reads;
  return s;
}

inline ClientSecurity Client(std::string ca, std::string cert = "", std::string key = "",
                             std::string token = "") {
  ClientSecurity s;
  s.tls_ca = std::move(ca);
  s.tls_cert = std::move(cert);
  s.tls_key = std::move(key);
  s.token = std::move(token);
  return s;
}

}  // namespace qsr

#endif  // QSR_TESTS_COORDINATOR_TEST_SECURITY_H_
