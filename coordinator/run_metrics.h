// The coordinator's own metrics: RenderRunMetrics turns a status snapshot and the round
// statistics into Prometheus families (MetricsServer serves them with the build and process
// metrics). Names follow Prometheus' conventions: base units in the name (_seconds, _bytes,
// _steps, _ratio), _total on counters, _timestamp_seconds on points in time; rates are left to
// PromQL (rate(qsr_samples_total[5m])).
//
// RoundStats keeps what Status() does not: the round-duration histogram, the sample counter,
// the parameter checks and when the last round was committed, fed by RunController's
// on_round_committed hook. Thread-safe.
#ifndef QSR_COORDINATOR_RUN_METRICS_H_
#define QSR_COORDINATOR_RUN_METRICS_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

// Per-round statistics that Status() does not keep: fed by RunController's on_round_committed
// hook. Thread-safe.
class RoundStats {
 public:
  // Upper bounds (seconds) of the round-duration histogram's buckets; +Inf is implied.
  static constexpr std::array<double, 14> kBuckets = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                      2.5,  5,     10,   30,  60,   120, 300};
  struct Snapshot {
    std::array<int64_t, kBuckets.size()> cumulative{};  // rounds with seconds <= kBuckets[i]
    int64_t count = 0;
    double sum = 0;
    int64_t samples = 0;
    int64_t checked_rounds = 0;     // rounds after which the workers compared parameters
    int64_t mismatched_rounds = 0;  // rounds whose workers' parameters differed
    absl::Time last_commit = absl::InfinitePast();  // when the last round was committed
  };

  // Counts `round`, committed at `now`.
  void Observe(const v1::RoundRecord& round, absl::Time now);
  Snapshot Get() const;

 private:
  mutable absl::Mutex mu_;
  Snapshot s_ ABSL_GUARDED_BY(mu_);
};

// The coordinator's metric families for one status taken at `now` and its round statistics.
std::string RenderRunMetrics(const v1::GetStatusReply& status, const RoundStats::Snapshot& rounds,
                             absl::Time now);

}  // namespace qsr

#endif  // QSR_COORDINATOR_RUN_METRICS_H_
