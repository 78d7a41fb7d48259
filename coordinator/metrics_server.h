// MetricsServer: the coordinator's Prometheus endpoint.
//
// Serves GET /metrics in the Prometheus text exposition format (version 0.0.4) over plain HTTP
// (cpp-httplib), and GET /healthz ("ok"). Every scrape renders RunController::Status() — global
// step, epoch, learning rate, current H, rounds, workers by state, bytes, throughput, losses,
// accuracy, failures and regroups — together with RoundStats, which the controller feeds as rounds
// commit (the round-duration histogram and the sample counter).
//
// Lifecycle: Start() binds (port 0: the OS chooses) and serves on a background thread with a small
// pool; Shutdown() (also run by the destructor) stops it. Thread-safe.
//
// Built without cpp-httplib (QSR_HAVE_HTTPLIB undefined, e.g. on a machine without Debian's
// libcpp-httplib-dev), Start() returns UNIMPLEMENTED; RenderMetrics works either way.
#ifndef QSR_COORDINATOR_METRICS_SERVER_H_
#define QSR_COORDINATOR_METRICS_SERVER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/run_controller.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

// Per-round statistics that Status() does not keep: fed by RunController's on_round_committed
// hook. Thread-safe.
class RoundStats {
 public:
  // Upper bounds (seconds) of the round-duration histogram's buckets; +Inf is implied.
  static constexpr std::array<double, 14> kBuckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                      2.5,  5,     10,   30,  60,   120, 300};
  struct Snapshot {
    std::array<int64_t, kBuckets.size()> cumulative{};  // rounds with seconds <= kBuckets[i]
    int64_t count = 0;
    double sum = 0;
    int64_t samples = 0;
    int64_t checked_rounds = 0;     // rounds after which the workers compared parameters
    int64_t mismatched_rounds = 0;  // rounds whose workers' parameters differed
  };

  void Observe(const v1::RoundRecord& round);
  Snapshot Get() const;

 private:
  mutable absl::Mutex mu_;
  Snapshot s_ ABSL_GUARDED_BY(mu_);
};

// The /metrics page for one status and its round statistics.
std::string RenderMetrics(const v1::GetStatusReply& status, const RoundStats::Snapshot& rounds);

class MetricsServer {
 public:
  // Serves on `host`:`port` (port 0: the OS chooses). `controller` and `stats` must outlive the
  // server.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const RunController* controller,
                                                              const RoundStats* stats,
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

}  // namespace qsr

#endif  // QSR_COORDINATOR_METRICS_SERVER_H_
