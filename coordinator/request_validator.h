// Request validation: the bounds every field of a qsr.v1 request must respect before the
// coordinator acts on it. Each check returns INVALID_ARGUMENT with a message naming the field,
// its value (or size) and what is allowed, so a confused client learns what to fix and a hostile
// one cannot make the coordinator hold unbounded data.
//
// These are the stateless checks (sizes, ranges, counts). What depends on the run's state (is
// this rank a member, is this the current generation, was this round served) is checked by the
// RunController, and the rendezvous sizes by the KvStore (its Limits).
//
// Pure functions; thread-safe.
#ifndef QSR_COORDINATOR_REQUEST_VALIDATOR_H_
#define QSR_COORDINATOR_REQUEST_VALIDATOR_H_

#include <cstdint>

#include "absl/status/status.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

struct RequestLimits {
  static constexpr size_t kMaxWorkerIdBytes = 256;
  static constexpr size_t kMaxHostBytes = 256;
  static constexpr size_t kMaxDeviceBytes = 64;
  static constexpr int32_t kMaxRank = 65535;
  // Ranks a host agent may bring to the barrier in one NextRounds call besides the caller.
  static constexpr int kMaxCoMembers = 1024;
  static constexpr int64_t kMaxRound = int64_t{1} << 40;
  static constexpr int64_t kMaxStep = int64_t{1} << 48;
  static constexpr int kMaxRoundReports = 4096;
  static constexpr int kMaxEvalReports = 1024;
  static constexpr int kMaxCheckpointReports = 64;
  static constexpr size_t kMaxPathBytes = 4096;
  static constexpr size_t kMaxErrorBytes = 16 * 1024;
  static constexpr int64_t kMaxKvWaitMs = 3600 * 1000;
  static constexpr int64_t kMaxListLimit = 1000000;
  static constexpr size_t kMaxStopReasonBytes = 1024;
};

absl::Status ValidateJoin(const v1::JoinRequest& request);
absl::Status ValidateHeartbeat(const v1::HeartbeatRequest& request);
absl::Status ValidateNextRounds(const v1::NextRoundsRequest& request);
absl::Status ValidateReport(const v1::ReportRequest& request);
// The batch's size only: each report in it is validated as a Report of its own.
absl::Status ValidateReportBatch(const v1::ReportBatchRequest& request);
absl::Status ValidateLeave(const v1::LeaveRequest& request);
// KvGet's wait; its keys, like KvSet's key and value, are bounded by the KvStore's Limits.
absl::Status ValidateKvGet(const v1::KvGetRequest& request);
absl::Status ValidateListRounds(const v1::ListRoundsRequest& request);
absl::Status ValidateStop(const v1::StopRequest& request);

}  // namespace qsr

#endif  // QSR_COORDINATOR_REQUEST_VALIDATOR_H_
