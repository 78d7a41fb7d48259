// qsr-agent's command line: its flags, checked into what the agent is started with. Every check
// runs before anything starts; an error names the flag and what is allowed (the agent exits 2).
//
// Pure apart from reading the token file of the client security flags; thread-compatible.
#ifndef QSR_AGENT_AGENT_FLAGS_H_
#define QSR_AGENT_AGENT_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "agent/agent_service.h"
#include "agent/host_agent.h"
#include "common/flags.h"

namespace qsr {

struct AgentLaunch {
  HostAgent::Options agent;
  int metrics_port = -1;  // -1: no /metrics; 0: the OS chooses
  std::string metrics_host;
  std::string port_file;  // where to write the bound port once serving (empty: nowhere)
};

// A parser with qsr-agent's flags declared (the client security flags among them).
FlagParser AgentFlags();

// The launch the parsed `flags` ask for; InvalidArgument naming the bad flag.
absl::StatusOr<AgentLaunch> AgentLaunchFromFlags(const FlagParser& flags);

// The agent's counters as the one JSON line it prints when it stops.
std::string AgentStatsJson(const AgentService::Stats& s);

}  // namespace qsr

#endif  // QSR_AGENT_AGENT_FLAGS_H_
