#include "metrics/metrics_server.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "metrics/prometheus_text.h"
#include "glog/logging.h"

#ifdef QSR_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace qsr {
namespace {

// Scrapes are small and rare: two handler threads are plenty.
constexpr size_t kHandlerThreads = 2;
constexpr int kIoTimeoutS = 5;
// How long Start() waits for the listening thread to come up.
constexpr absl::Duration kStartTimeout = absl::Seconds(5);

}  // namespace

std::string MetricsPage(const std::string& own, const std::string& binary) {
  PrometheusPage page;
  AppendBuildInfo(binary, &page);
  // A process that cannot read /proc/self (not Linux) still serves its own metrics.
  if (absl::StatusOr<ProcessStats> stats = ReadProcessStats(); stats.ok()) {
    AppendProcessMetrics(*stats, &page);
  }
  return own + std::move(page).str();
}

#ifdef QSR_HAVE_HTTPLIB

struct MetricsServer::Http {
  httplib::Server server;
  std::thread thread;
};

MetricsServer::MetricsServer() : http_(std::make_unique<Http>()) {}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    std::function<std::string()> render, const std::string& binary, const std::string& host,
    int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics port ", port, " is not in [0, 65535]"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  httplib::Server& http = server->http_->server;
  http.new_task_queue = [] { return new httplib::ThreadPool(kHandlerThreads); };
  // httplib's default also sets SO_REUSEPORT, with which a second server on this port would
  // silently share the port; SO_REUSEADDR alone still allows a restart while old sockets linger.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.set_read_timeout(kIoTimeoutS, 0);
  http.set_write_timeout(kIoTimeoutS, 0);
  http.Get("/metrics", [render = std::move(render), binary](const httplib::Request&,
                                                            httplib::Response& res) {
    res.set_content(MetricsPage(render(), binary), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/", [binary](const httplib::Request&, httplib::Response& res) {
    res.set_content(binary + ": metrics at /metrics\n", "text/plain");
  });

  // "[::]" in a gRPC address is "::" to the socket API.
  std::string bind_host = host;
  if (bind_host.size() >= 2 && bind_host.front() == '[' && bind_host.back() == ']') {
    bind_host = bind_host.substr(1, bind_host.size() - 2);
  }
  if (port == 0) {
    server->port_ = http.bind_to_any_port(bind_host.c_str());
  } else if (http.bind_to_port(bind_host.c_str(), port)) {
    server->port_ = port;
  }
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", host, ":", port,
                                               " (address in use, or not a local address?)"));
  }
  server->http_->thread = std::thread([&http] { http.listen_after_bind(); });
  // Wait until the loop runs, so that a Shutdown() right after Start() cannot miss it.
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (!http.is_running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  if (!http.is_running()) {
    // The thread may still start and use the server: leave both to the process, on purpose.
    server->http_->thread.detach();
    (void)server.release();
    return absl::InternalError("the metrics HTTP server did not start within 5 s");
  }
  LOG(INFO) << "metrics on http://" << host << ":" << server->port_ << "/metrics";
  return server;
}

void MetricsServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  http_->server.stop();
  if (http_->thread.joinable()) http_->thread.join();
}

#else  // QSR_HAVE_HTTPLIB

struct MetricsServer::Http {};

MetricsServer::MetricsServer() = default;

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(std::function<std::string()>,
                                                                    const std::string& binary,
                                                                    const std::string&, int) {
  return absl::UnimplementedError(
      binary + " was built without cpp-httplib (libcpp-httplib-dev): no metrics");
}

void MetricsServer::Shutdown() { shut_down_ = true; }

#endif  // QSR_HAVE_HTTPLIB

MetricsServer::~MetricsServer() { Shutdown(); }

}  // namespace qsr
