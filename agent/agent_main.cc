// qsr-agent: the per-host relay between a host's workers and the coordinator. See --help.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent_metrics.h"
#include "agent/host_agent.h"
#include "client/connection_security.h"
#include "common/flags.h"
#include "common/log_prefix.h"
#include "glog/logging.h"
#include "metrics/metrics_server.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "qsr-agent: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  qsr::InitLogging(argv[0]);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);  // see qsr-coordinator
  qsr::FlagParser flags(
      "qsr-agent",
      "qsr-agent --coordinator HOST:PORT [--listen 127.0.0.1:PORT | unix:PATH] [--window-ms N]\n"
      "Relays this host's workers to the coordinator over one connection: their round barrier "
      "as one message per host on a stream, one heartbeat per interval, reports in batches. "
      "Point each worker's --coordinator at --listen. Runs until SIGINT or SIGTERM, then prints "
      "its counters as one JSON line.");
  flags.Add("coordinator", "", "the coordinator's HOST:PORT (required)");
  flags.Add("listen", "127.0.0.1:7071",
            "where this host's workers reach the agent: loopback HOST:PORT (port 0: the OS "
            "chooses) or unix:PATH");
  flags.Add("port-file", "", "write the bound port to this file once serving");
  flags.Add("window-ms", "500",
            "longest a worker's barrier call (or report) is held for the rest of its host before "
            "it goes to the coordinator without them");
  flags.Add("metrics-port", "-1",
            "serve Prometheus metrics over HTTP at /metrics on this port (-1: off; 0: the OS "
            "chooses, logged)");
  flags.Add("metrics-host", "0.0.0.0",
            "the address --metrics-port binds (every interface by default: Prometheus scrapes "
            "from elsewhere, while --listen stays on loopback)");
  qsr::AddClientSecurityFlags(flags);
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (flags.Get("coordinator").empty())
    return Fail("--coordinator HOST:PORT is required (see --help)");
  absl::StatusOr<int64_t> window_ms = flags.GetInt("window-ms");
  if (!window_ms.ok()) return Fail(std::string(window_ms.status().message()));
  if (*window_ms < 1 || *window_ms > 600000) {
    return Fail(absl::StrFormat("--window-ms is %d; allowed: 1 to 600000", *window_ms));
  }
  absl::StatusOr<int64_t> metrics_port = flags.GetInt("metrics-port");
  if (!metrics_port.ok()) return Fail(std::string(metrics_port.status().message()));
  if (*metrics_port < -1 || *metrics_port > 65535) {
    return Fail(absl::StrFormat(
        "--metrics-port is %d; allowed: -1 (off), 0 (the OS chooses) or a port up to 65535",
        *metrics_port));
  }
  absl::StatusOr<qsr::ClientSecurity> security = qsr::ClientSecurityFromFlags(flags);
  if (!security.ok()) return Fail(std::string(security.status().message()));

  // Signals are taken by sigwait below, not by a handler: block them before any thread starts
  // (gRPC's inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  qsr::HostAgent::Options options;
  options.coordinator = flags.Get("coordinator");
  options.security = std::move(*security);
  options.listen = flags.Get("listen");
  options.window = absl::Milliseconds(*window_ms);
  absl::StatusOr<std::unique_ptr<qsr::HostAgent>> agent = qsr::HostAgent::Start(options);
  if (!agent.ok()) return Fail(std::string(agent.status().message()));
  LOG(INFO) << "qsr-agent: serving " << (*agent)->address() << " for coordinator "
            << options.coordinator;
  std::unique_ptr<qsr::MetricsServer> metrics;
  if (*metrics_port >= 0) {
    const qsr::HostAgent* host_agent = agent->get();
    absl::StatusOr<std::unique_ptr<qsr::MetricsServer>> started = qsr::MetricsServer::Start(
        [host_agent] { return qsr::RenderAgentMetrics(host_agent->stats()); }, "qsr-agent",
        flags.Get("metrics-host"), static_cast<int>(*metrics_port));
    if (!started.ok()) {
      (*agent)->Shutdown();
      return Fail(std::string(started.status().message()));
    }
    metrics = std::move(*started);
  }
  if (!flags.Get("port-file").empty()) {
    std::string tmp = flags.Get("port-file") + ".tmp";
    std::ofstream(tmp) << (*agent)->port() << "\n";
    std::rename(tmp.c_str(), flags.Get("port-file").c_str());
  }
  int sig = 0;
  sigwait(&signals, &sig);
  LOG(INFO) << "qsr-agent: signal " << sig << ": shutting down";
  if (metrics) metrics->Shutdown();
  (*agent)->Shutdown();
  qsr::AgentService::Stats s = (*agent)->stats();
  std::cout << absl::StrFormat(
                   "{\"agent\":\"stats\",\"barrier_calls\":%d,\"upstream_barrier_calls\":%d,"
                   "\"forwarded_calls\":%d,\"superseded\":%d,\"local_heartbeats\":%d,"
                   "\"upstream_heartbeats\":%d,\"local_reports\":%d,"
                   "\"upstream_report_batches\":%d,\"known_workers\":%d}",
                   s.barrier_calls, s.upstream_barrier_calls, s.forwarded_calls, s.superseded,
                   s.local_heartbeats, s.upstream_heartbeats, s.local_reports,
                   s.upstream_report_batches, s.known_workers)
            << std::endl;
  return 0;
}
