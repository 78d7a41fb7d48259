// The qsr-agent's own metrics: its relay counters (AgentService::Stats) as Prometheus families,
// served by MetricsServer on the agent's --metrics-port together with the build and process
// metrics. The ratio of local to upstream calls is what the agent saves the coordinator.
// Pure: no state, thread-safe.
#ifndef QSR_AGENT_AGENT_METRICS_H_
#define QSR_AGENT_AGENT_METRICS_H_

#include <string>

#include "agent/agent_service.h"

namespace qsr {

std::string RenderAgentMetrics(const AgentService::Stats& stats);

}  // namespace qsr

#endif  // QSR_AGENT_AGENT_METRICS_H_
