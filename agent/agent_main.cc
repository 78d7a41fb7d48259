// qsr-agent: the per-host relay between a host's workers and the coordinator. See --help.
#include <csignal>
#include <iostream>

#include "absl/synchronization/mutex.h"
#include "agent/agent_flags.h"
#include "agent/agent_metrics.h"
#include "agent/host_agent.h"
#include "glog/logging.h"
#include "logging/log_prefix.h"
#include "metrics/metrics_server.h"
#include "serving/port_file.h"

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
  qsr::FlagParser flags = qsr::AgentFlags();
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  absl::StatusOr<qsr::AgentLaunch> launch = qsr::AgentLaunchFromFlags(flags);
  if (!launch.ok()) return Fail(std::string(launch.status().message()));

  // Signals are taken by sigwait below, not by a handler: block them before any thread starts
  // (gRPC's inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<qsr::HostAgent>> agent = qsr::HostAgent::Start(launch->agent);
  if (!agent.ok()) return Fail(std::string(agent.status().message()));
  LOG(INFO) << "qsr-agent: serving " << (*agent)->address() << " for coordinator "
            << launch->agent.coordinator;
  std::unique_ptr<qsr::MetricsServer> metrics;
  if (launch->metrics_port >= 0) {
    const qsr::HostAgent* host_agent = agent->get();
    absl::StatusOr<std::unique_ptr<qsr::MetricsServer>> started = qsr::MetricsServer::Start(
        [host_agent] { return qsr::RenderAgentMetrics(host_agent->stats()); }, "qsr-agent",
        launch->metrics_host, launch->metrics_port);
    if (!started.ok()) {
      (*agent)->Shutdown();
      return Fail(std::string(started.status().message()));
    }
    metrics = std::move(*started);
  }
  if (absl::Status s = qsr::WritePortFile(launch->port_file, (*agent)->port()); !s.ok()) {
    if (metrics) metrics->Shutdown();
    (*agent)->Shutdown();
    return Fail(std::string(s.message()));
  }
  int sig = 0;
  sigwait(&signals, &sig);
  LOG(INFO) << "qsr-agent: signal " << sig << ": shutting down";
  if (metrics) metrics->Shutdown();
  (*agent)->Shutdown();
  std::cout << qsr::AgentStatsJson((*agent)->stats()) << std::endl;
  return 0;
}
