// CoordinatorServer: a running coordinator — the gRPC server (with reflection and the standard
// health service), the run controller, the rendezvous store, the ticker that expires waits, and
// optionally the Prometheus metrics endpoint (MetricsServer).
//
// Lifecycle: Start() binds and serves; the run proceeds as workers call in; AwaitDone() returns
// when the run has ended and every worker has left; Shutdown() (also run by the destructor) stops
// serving. Used by qsr-coordinator and, in-process, by the integration tests.
//
// Thread-safe.
#ifndef QSR_COORDINATOR_COORDINATOR_SERVER_H_
#define QSR_COORDINATOR_COORDINATOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/recipe.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/kv_store.h"
#include "coordinator/run_controller.h"
#include "coordinator/run_metrics.h"
#include "coordinator/server_security.h"
#include "coordinator/token_guard.h"
#include "metrics/metrics_server.h"

namespace qsr {

class CoordinatorServer {
 public:
  struct Options {
    std::string listen = "127.0.0.1:0";  // port 0: the OS chooses
    std::string run_dir;                 // empty: no run directory
    // Serve Prometheus metrics over HTTP on this port of the --listen host: -1 off, 0 the OS
    // chooses (see metrics_port()).
    int metrics_port = -1;
    // TLS / mutual TLS and the run token (server_security.h). Default: insecure, open.
    ServerSecurity security;
    RunController::Options run;
    // The run's journal (--state-dir), and what it recovered (continued when it exists).
    std::shared_ptr<Journal> journal;
    Journal::Recovered recovered;
  };

  // REQUIRES: `recipe` resolved. Errors: unreadable TLS files (naming the flag and file), an
  // address that cannot be bound, a metrics port in use.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const Recipe& recipe,
                                                                  Options options);
  ~CoordinatorServer();

  int port() const { return port_; }
  // The metrics port, or -1 when metrics are off.
  int metrics_port() const { return metrics_ ? metrics_->port() : -1; }
  std::string address() const;
  RunController& controller() { return *controller_; }
  // Blocks until the run is done or the deadline; returns whether it is done.
  bool AwaitDone(absl::Time deadline) { return controller_->AwaitDone(deadline); }
  void Shutdown();

 private:
  CoordinatorServer() = default;
  void TickLoop();

  std::string host_;
  int port_ = 0;
  RoundStats round_stats_;
  std::unique_ptr<RunController> controller_;
  std::unique_ptr<KvStore> store_;
  std::unique_ptr<TokenGuard> guard_;
  std::unique_ptr<CoordinatorService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsServer> metrics_;
  absl::Notification stop_;
  std::thread ticker_;
  bool shut_down_ = false;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_COORDINATOR_SERVER_H_
