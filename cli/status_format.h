// Rendering of coordinator replies for people (tables, progress lines) and for machines (JSON).
// Shared by qsrctl and qsr-run. Pure functions, thread-safe.
#ifndef QSR_CLI_STATUS_FORMAT_H_
#define QSR_CLI_STATUS_FORMAT_H_

#include <string>

#include "common/round_planner.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

// The --json forms are one line of protobuf's JSON each (proto/json/json_line.h: what grpcurl and
// every protobuf library read): fields under their .proto names, every field printed, 64-bit
// integers of the protocol's messages as strings. RoundJson and PlanSummaryJson print
// qsr.v1.PlannedRound and qsr.v1.PlanSummaryLine (proto/qsr/v1/tool_output.proto).
std::string StatusJson(const v1::GetStatusReply& s);
std::string StatusTable(const v1::GetStatusReply& s);
// One line: "step 1200/2340 (51%) epoch 2.56 | lr 0.0841 H 12 | round 310 | loss 0.3120 | ..."
std::string ProgressLine(const v1::GetStatusReply& s);
std::string RoundRecordJson(const v1::RoundRecord& r);
std::string RoundJson(const Round& r);
std::string PlanSummaryJson(const PlanSummary& s, double alpha);
std::string HumanBytes(int64_t bytes);
// "42s", "3m05s", "1h02m"; "--" when negative (unknown).
std::string HumanDuration(double seconds);

// The workers of a status, one per line under a header: rank, worker id, host, device, state,
// seconds since the last heartbeat, samples/s. Says so when none has joined yet.
std::string WorkersTable(const v1::GetStatusReply& s);
std::string WorkerJson(const v1::WorkerInfo& w);

// One line for `qsrctl watch`: a progress bar of `bar_width` cells, the step, epoch, lr, H, loss,
// latest test accuracy, throughput, and the ETA (`eta_s` < 0: unknown).
std::string WatchLine(const v1::GetStatusReply& s, double eta_s, int bar_width = 30);

// Seconds left in the run of `s`, from the step rate since an earlier status at `step0`,
// `seconds_since` ago (or, before any step since then, the run's average); -1 when unknown.
double EstimateEtaSeconds(const v1::GetStatusReply& s, int64_t step0, double seconds_since);

}  // namespace qsr

#endif  // QSR_CLI_STATUS_FORMAT_H_
