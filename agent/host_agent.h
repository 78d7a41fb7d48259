// HostAgent: a running qsr-agent, the per-host relay between a host's workers and the
// coordinator (as torchelastic's agent or Ray's raylet sit between a host's processes and the
// head). The workers of the host point --coordinator at it, and the coordinator hears from the
// host over one connection (AgentService): the round barrier as one message per host, one
// heartbeat per interval, reports in batches. A coordinator with 1,024 workers on 128 hosts then
// answers 128 barrier messages instead of 1,024 calls.
//
// Lifecycle: Start() binds and serves, and starts the thread that flushes held barrier calls and
// reports when their window passes and beats upstream; Shutdown() (also run by the destructor)
// answers what it holds, stops serving and waits for upstream callbacks to drain (bounded).
//
// Thread-safe.
#ifndef QSR_AGENT_HOST_AGENT_H_
#define QSR_AGENT_HOST_AGENT_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "agent/agent_service.h"
#include "client/connection_security.h"

namespace qsr {

class HostAgent {
 public:
  struct Options {
    // The coordinator (HOST:PORT) and how to reach it (TLS, token).
    std::string coordinator;
    ClientSecurity security;
    // Where the host's workers reach the agent: a loopback HOST:PORT (port 0: the OS chooses) or
    // unix:PATH. Nothing else: the agent trusts its callers and sends its own token upstream.
    std::string listen = "127.0.0.1:0";
    // How long a held barrier call or report waits for the rest of its host.
    absl::Duration window = absl::Milliseconds(500);
  };

  // Errors: an empty coordinator address, a --listen that is not loopback or unix: (naming what
  // is allowed), a non-positive window, unreadable TLS files, an address that cannot be bound.
  static absl::StatusOr<std::unique_ptr<HostAgent>> Start(Options options);
  ~HostAgent();

  // The bound port (0 for a unix: socket) and the address workers should use.
  int port() const { return port_; }
  const std::string& address() const { return address_; }
  AgentService::Stats stats() const { return service_->stats(); }
  void Shutdown();

 private:
  HostAgent() = default;
  void FlushLoop();

  int port_ = 0;
  std::string address_;
  std::unique_ptr<AgentService> service_;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification stop_;
  std::thread flusher_;
  bool shut_down_ = false;
};

}  // namespace qsr

#endif  // QSR_AGENT_HOST_AGENT_H_
