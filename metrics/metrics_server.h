// MetricsServer: a Prometheus endpoint for one qsr process (the coordinator, the agent).
//
// Serves GET /metrics in the Prometheus text exposition format (version 0.0.4) over plain HTTP
// (cpp-httplib), and GET /healthz ("ok"). Every scrape calls the owner's render function for its
// own metrics and appends qsr_build_info and the process_* metrics (metrics/prometheus_text.h).
//
// Lifecycle: Start() binds (port 0: the OS chooses) and serves on a background thread with a small
// pool; Shutdown() (also run by the destructor) stops it. Thread-safe; `render` is called from
// the handler threads and must be too.
//
// Built without cpp-httplib (QSR_HAVE_HTTPLIB undefined, e.g. on a machine without Debian's
// libcpp-httplib-dev), Start() returns UNIMPLEMENTED.
#ifndef QSR_METRICS_METRICS_SERVER_H_
#define QSR_METRICS_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace qsr {

class MetricsServer {
 public:
  // Serves on `host`:`port` (port 0: the OS chooses; "[::]" and "0.0.0.0" every interface).
  // `binary` names the process in qsr_build_info.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(std::function<std::string()> render,
                                                              const std::string& binary,
                                                              const std::string& host, int port);
  ~MetricsServer();

  int port() const { return port_; }
  void Shutdown();

 private:
  struct Http;  // the HTTP server and its thread

  MetricsServer();

  std::unique_ptr<Http> http_;
  int port_ = 0;
  bool shut_down_ = false;
};

// The whole page: `own` (the owner's metrics), then qsr_build_info and the process metrics.
std::string MetricsPage(const std::string& own, const std::string& binary);

}  // namespace qsr

#endif  // QSR_METRICS_METRICS_SERVER_H_
