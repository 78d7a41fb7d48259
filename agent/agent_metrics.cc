#include "agent/agent_metrics.h"

#include <utility>

#include "metrics/prometheus_text.h"

namespace qsr {

std::string RenderAgentMetrics(const AgentService::Stats& s) {
  PrometheusPage p;
  p.One("qsr_agent_barrier_calls_total", "counter",
        "Round barrier calls (NextRounds) from this host's workers.", s.barrier_calls);
  p.One("qsr_agent_upstream_barrier_calls_total", "counter",
        "Round barrier calls sent to the coordinator (one per host and round when coalesced).",
        s.upstream_barrier_calls);
  p.One("qsr_agent_forwarded_calls_total", "counter",
        "Other calls (Join, Leave, operator calls) passed through to the coordinator.",
        s.forwarded_calls);
  p.One("qsr_agent_superseded_calls_total", "counter",
        "Held barrier calls replaced by the same worker's retry.", s.superseded);
  p.One("qsr_agent_heartbeats_total", "counter", "Heartbeats from this host's workers.",
        s.local_heartbeats);
  p.One("qsr_agent_upstream_heartbeats_total", "counter",
        "Heartbeats sent to the coordinator for the host.", s.upstream_heartbeats);
  p.One("qsr_agent_reports_total", "counter", "Round reports from this host's workers.",
        s.local_reports);
  p.One("qsr_agent_upstream_report_batches_total", "counter",
        "Report batches sent to the coordinator.", s.upstream_report_batches);
  p.One("qsr_agent_known_workers", "gauge",
        "Local workers the agent knows as members of the current generation.", s.known_workers);
  return std::move(p).str();
}

}  // namespace qsr
