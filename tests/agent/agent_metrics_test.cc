#include "agent/agent_metrics.h"

#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

TEST(AgentMetricsTest, EveryCounterIsACounterWithItsValue) {
  AgentService::Stats s;
  s.barrier_calls = 64;
  s.upstream_barrier_calls = 8;
  s.forwarded_calls = 3;
  s.superseded = 1;
  s.local_heartbeats = 400;
  s.upstream_heartbeats = 50;
  s.local_reports = 64;
  s.upstream_report_batches = 9;
  s.known_workers = 8;
  const std::string page = RenderAgentMetrics(s);
  std::map<std::string, std::string> types;
  std::map<std::string, std::string> values;
  for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    if (absl::StartsWith(line, "# TYPE ")) {
      types[parts[2]] = parts[3];
    } else if (!absl::StartsWith(line, "#")) {
      ASSERT_EQ(parts.size(), 2u) << line;
      values[parts[0]] = parts[1];
    }
  }
  const std::map<std::string, std::string> want = {
      {"qsr_agent_barrier_calls_total", "64"},  {"qsr_agent_upstream_barrier_calls_total", "8"},
      {"qsr_agent_forwarded_calls_total", "3"}, {"qsr_agent_superseded_calls_total", "1"},
      {"qsr_agent_heartbeats_total", "400"},    {"qsr_agent_upstream_heartbeats_total", "50"},
      {"qsr_agent_reports_total", "64"},        {"qsr_agent_upstream_report_batches_total", "9"},
      {"qsr_agent_known_workers", "8"}};
  EXPECT_EQ(values, want) << page;
  for (const auto& [name, value] : want) {
    EXPECT_EQ(types[name], absl::EndsWith(name, "_total") ? "counter" : "gauge") << name;
  }
}

}  // namespace
}  // namespace qsr
