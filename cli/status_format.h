// Rendering of coordinator replies for people (tables, progress lines) and for machines (JSON).
// Shared by qsrctl and qsr-run. Pure functions, thread-safe.
#ifndef QSR_CLI_STATUS_FORMAT_H_
#define QSR_CLI_STATUS_FORMAT_H_

#include <string>

#include "common/round_planner.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

std::string StatusJson(const v1::GetStatusReply& s);
std::string StatusTable(const v1::GetStatusReply& s);
// One line: "step 1200/2340 (51%) epoch 2.56 | lr 0.0841 H 12 | round 310 | loss 0.3120 | ..."
std::string ProgressLine(const v1::GetStatusReply& s);
std::string RoundRecordJson(const v1::RoundRecord& r);
std::string RoundJson(const Round& r);
std::string PlanSummaryJson(const PlanSummary& s);
std::string HumanBytes(int64_t bytes);

}  // namespace qsr

#endif  // QSR_CLI_STATUS_FORMAT_H_
