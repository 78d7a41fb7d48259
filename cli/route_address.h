// LocalAddressTowards: the address of this host that a peer reaches it on, found the way the
// kernel would route to the coordinator (a connected UDP socket's local address; no packet is
// sent). qsr-run uses it as the workers' --host when none is given.
//
// Pure functions over the OS's resolver and routing table; thread-safe.
#ifndef QSR_CLI_ROUTE_ADDRESS_H_
#define QSR_CLI_ROUTE_ADDRESS_H_

#include <string>

#include "absl/status/statusor.h"

namespace qsr {

// Splits "HOST:PORT" ("[v6]:PORT" too). INVALID_ARGUMENT naming the value when it is not one.
absl::Status SplitHostPort(const std::string& address, std::string* host, int* port);

// The local address (numeric) of the route to `address` (HOST:PORT, HOST a name or a number).
// INVALID_ARGUMENT when the host does not resolve; UNAVAILABLE when there is no route.
absl::StatusOr<std::string> LocalAddressTowards(const std::string& address);

// Whether `host` (a name or a number) resolves to a loopback address.
bool IsLoopbackHost(const std::string& host);

}  // namespace qsr

#endif  // QSR_CLI_ROUTE_ADDRESS_H_
