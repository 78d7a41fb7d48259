#include "coordinator/request_validator.h"

#include <cmath>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

using L = RequestLimits;

absl::Status Invalid(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::Status CheckSize(const char* field, const std::string& value, size_t min, size_t max) {
  if (value.size() < min || value.size() > max) {
    return Invalid(
        absl::StrCat(field, " is ", value.size(), " bytes; allowed: ", min, " to ", max));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const char* field, int64_t value, int64_t min, int64_t max) {
  if (value < min || value > max) {
    return Invalid(absl::StrCat(field, " is ", value, "; allowed: ", min, " to ", max));
  }
  return absl::OkStatus();
}

// A count or amount a worker measured: finite (or NaN, which a diverged run honestly reports for
// a loss) and never negative.
absl::Status CheckMeasure(const char* field, double value) {
  if (value < 0 || std::isinf(value)) {
    return Invalid(absl::StrCat(field, " is ", value, "; allowed: finite and >= 0"));
  }
  return absl::OkStatus();
}

// A learning rate: unlike a measure, NaN is refused too (it would be logged as the round's lr).
absl::Status CheckLearningRate(const char* field, double value) {
  if (!(value >= 0) || std::isinf(value)) {
    return Invalid(absl::StrCat(field, " is ", value, "; allowed: finite and >= 0"));
  }
  return absl::OkStatus();
}

// The identity fields every worker call carries.
absl::Status CheckMember(const std::string& worker_id, int32_t rank, int64_t generation) {
  if (absl::Status s = CheckSize("worker_id", worker_id, 1, L::kMaxWorkerIdBytes); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange("rank", rank, 0, L::kMaxRank); !s.ok()) return s;
  return CheckRange("generation", generation, 0, INT64_MAX);
}

// The members a host agent brings along with the caller: bounded, well-formed, and each rank
// (the caller's included) once.
absl::Status CheckCoMembers(int32_t caller_rank, int64_t generation,
                            const google::protobuf::RepeatedPtrField<v1::CoMember>& co_members) {
  if (co_members.empty()) return absl::OkStatus();  // a worker's own call
  if (co_members.size() > L::kMaxCoMembers) {
    return Invalid(absl::StrCat("co_members has ", co_members.size(), " entries; allowed: up to ",
                                L::kMaxCoMembers));
  }
  std::set<int32_t> ranks = {caller_rank};
  for (const v1::CoMember& m : co_members) {
    if (absl::Status s = CheckMember(m.worker_id(), m.rank(), generation); !s.ok()) {
      return Invalid(absl::StrCat("co_members: ", s.message()));
    }
    if (!ranks.insert(m.rank()).second) {
      return Invalid(absl::StrCat("co_members: rank ", m.rank(),
                                  " appears twice in one call; allowed: each rank once"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateJoin(const v1::JoinRequest& r) {
  if (absl::Status s = CheckSize("worker_id", r.worker_id(), 1, L::kMaxWorkerIdBytes); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckSize("host", r.host(), 0, L::kMaxHostBytes); !s.ok()) return s;
  if (absl::Status s = CheckSize("device", r.device(), 0, L::kMaxDeviceBytes); !s.ok()) return s;
  if (absl::Status s = CheckSize("failure", r.failure(), 0, 4096); !s.ok()) return s;
  if (absl::Status s = CheckSize("incarnation", r.incarnation(), 0, 256); !s.ok()) return s;
  if (absl::Status s = CheckRange("failed_generation", r.failed_generation(), 0, INT64_MAX);
      !s.ok()) {
    return s;
  }
  return CheckRange("next_round", r.next_round(), 0, L::kMaxRound);
}

absl::Status ValidateHeartbeat(const v1::HeartbeatRequest& r) {
  if (absl::Status s = CheckMember(r.worker_id(), r.rank(), r.generation()); !s.ok()) return s;
  if (absl::Status s = CheckRange("step", r.step(), 0, L::kMaxStep); !s.ok()) return s;
  return CheckCoMembers(r.rank(), r.generation(), r.co_members());
}

absl::Status ValidateNextRounds(const v1::NextRoundsRequest& r) {
  if (absl::Status s = CheckMember(r.worker_id(), r.rank(), r.generation()); !s.ok()) return s;
  if (absl::Status s = CheckRange("next_round", r.next_round(), 0, L::kMaxRound); !s.ok()) {
    return s;
  }
  return CheckCoMembers(r.rank(), r.generation(), r.co_members());
}

absl::Status ValidateReport(const v1::ReportRequest& r) {
  if (absl::Status s = CheckMember(r.worker_id(), r.rank(), r.generation()); !s.ok()) return s;
  if (r.rounds_size() > L::kMaxRoundReports || r.evals_size() > L::kMaxEvalReports ||
      r.checkpoints_size() > L::kMaxCheckpointReports) {
    return Invalid(absl::StrCat("report carries ", r.rounds_size(), " rounds, ", r.evals_size(),
                                " evals, ", r.checkpoints_size(), " checkpoints; allowed: up to ",
                                L::kMaxRoundReports, ", ", L::kMaxEvalReports, ", ",
                                L::kMaxCheckpointReports));
  }
  for (const v1::RoundReport& round : r.rounds()) {
    for (absl::Status s : {CheckRange("rounds.round", round.round(), 0, L::kMaxRound),
                           CheckRange("rounds.start_step", round.start_step(), 0, L::kMaxStep),
                           CheckRange("rounds.h", round.h(), 1, L::kMaxStep),
                           CheckRange("rounds.samples", round.samples(), 0, INT64_MAX),
                           CheckRange("rounds.bytes_sent", round.bytes_sent(), 0, INT64_MAX),
                           CheckMeasure("rounds.seconds", round.seconds()),
                           CheckLearningRate("rounds.lr", round.lr())}) {
      if (!s.ok()) return s;
    }
  }
  for (const v1::EvalReport& e : r.evals()) {
    for (absl::Status s : {CheckRange("evals.step", e.step(), 0, L::kMaxStep),
                           CheckRange("evals.examples", e.examples(), 0, INT64_MAX),
                           CheckMeasure("evals.epoch", e.epoch())}) {
      if (!s.ok()) return s;
    }
  }
  for (const v1::CheckpointReport& c : r.checkpoints()) {
    for (absl::Status s : {CheckRange("checkpoints.step", c.step(), 0, L::kMaxStep),
                           CheckRange("checkpoints.round", c.round(), 0, L::kMaxRound),
                           CheckRange("checkpoints.bytes", c.bytes(), 0, INT64_MAX),
                           CheckSize("checkpoints.manifest", c.manifest(), 1, L::kMaxPathBytes)}) {
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateReportBatch(const v1::ReportBatchRequest& r) {
  if (r.reports_size() > L::kMaxCoMembers + 1) {
    return Invalid(absl::StrCat("report batch has ", r.reports_size(), " reports; allowed: up to ",
                                L::kMaxCoMembers + 1));
  }
  return absl::OkStatus();  // each report is validated as a Report of its own
}

absl::Status ValidateLeave(const v1::LeaveRequest& r) {
  if (absl::Status s = CheckMember(r.worker_id(), r.rank(), r.generation()); !s.ok()) return s;
  return CheckSize("error", r.error(), 0, L::kMaxErrorBytes);
}

absl::Status ValidateKvGet(const v1::KvGetRequest& r) {
  return CheckRange("timeout_ms", r.timeout_ms(), 0, L::kMaxKvWaitMs);
}

absl::Status ValidateListRounds(const v1::ListRoundsRequest& r) {
  if (absl::Status s = CheckRange("from_round", r.from_round(), 0, L::kMaxRound); !s.ok()) {
    return s;
  }
  return CheckRange("limit", r.limit(), 0, L::kMaxListLimit);
}

absl::Status ValidateStop(const v1::StopRequest& r) {
  return CheckSize("reason", r.reason(), 0, L::kMaxStopReasonBytes);
}

}  // namespace qsr
