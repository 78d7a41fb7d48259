#include "agent/agent_flags.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "client/connection_security.h"
#include "proto/json/json_line.h"
#include "qsr/v1/tool_output.pb.h"

namespace qsr {

FlagParser AgentFlags() {
  FlagParser flags(
      "qsr-agent",
      "qsr-agent --coordinator HOST:PORT [--listen 127.0.0.1:PORT | unix:PATH] [--window 500ms]\n"
      "Relays this host's workers to the coordinator over one connection: their round barrier "
      "as one message per host on a stream, one heartbeat per interval, reports in batches. "
      "Point each worker's --coordinator at --listen. Runs until SIGINT or SIGTERM, then prints "
      "its counters as one JSON line.");
  flags.Add("coordinator", "", "the coordinator's HOST:PORT (required)");
  flags.Add("listen", "127.0.0.1:7071",
            "where this host's workers reach the agent: loopback HOST:PORT (port 0: the OS "
            "chooses) or unix:PATH");
  flags.Add("port-file", "", "write the bound port to this file once serving");
  flags.AddDuration("window", absl::Milliseconds(500),
                    "longest a worker's barrier call (or report) is held for the rest of its "
                    "host before it goes to the coordinator without them");
  flags.AddDeprecatedAlias("window-ms", "window", "ms");
  flags.AddInt("metrics-port", -1,
               "serve Prometheus metrics over HTTP at /metrics on this port (-1: off; 0: the OS "
               "chooses, logged)");
  flags.Add("metrics-host", "0.0.0.0",
            "the address --metrics-port binds (every interface by default: Prometheus scrapes "
            "from elsewhere, while --listen stays on loopback)");
  AddClientSecurityFlags(flags);
  return flags;
}

absl::StatusOr<AgentLaunch> AgentLaunchFromFlags(const FlagParser& flags) {
  if (flags.Get("coordinator").empty()) {
    return absl::InvalidArgumentError("--coordinator HOST:PORT is required (see --help)");
  }
  const absl::Duration window = flags.Duration("window");
  if (window < absl::Milliseconds(1) || window > absl::Minutes(10)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--window is %s; allowed: 1ms to 10m", absl::FormatDuration(window)));
  }
  const int64_t metrics_port = flags.Int("metrics-port");
  if (metrics_port < -1 || metrics_port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--metrics-port is %d; allowed: -1 (off), 0 (the OS chooses) or a port up to 65535",
        metrics_port));
  }
  absl::StatusOr<ClientSecurity> security = ClientSecurityFromFlags(flags);
  if (!security.ok()) return absl::InvalidArgumentError(security.status().message());
  AgentLaunch launch;
  launch.agent.coordinator = flags.Get("coordinator");
  launch.agent.security = *std::move(security);
  launch.agent.listen = flags.Get("listen");
  launch.agent.window = window;
  launch.metrics_port = static_cast<int>(metrics_port);
  launch.metrics_host = flags.Get("metrics-host");
  launch.port_file = flags.Get("port-file");
  return launch;
}

std::string AgentStatsJson(const AgentService::Stats& s) {
  v1::AgentStatsLine line;
  line.set_agent("stats");
  line.set_barrier_calls(static_cast<int32_t>(s.barrier_calls));
  line.set_upstream_barrier_calls(static_cast<int32_t>(s.upstream_barrier_calls));
  line.set_forwarded_calls(static_cast<int32_t>(s.forwarded_calls));
  line.set_superseded(static_cast<int32_t>(s.superseded));
  line.set_local_heartbeats(static_cast<int32_t>(s.local_heartbeats));
  line.set_upstream_heartbeats(static_cast<int32_t>(s.upstream_heartbeats));
  line.set_local_reports(static_cast<int32_t>(s.local_reports));
  line.set_upstream_report_batches(static_cast<int32_t>(s.upstream_report_batches));
  line.set_known_workers(static_cast<int32_t>(s.known_workers));
  return ToJsonLine(line);
}

}  // namespace qsr
