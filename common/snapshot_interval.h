// The one rule for --snapshot-every (qsr-worker, qsr-run): how many epochs apart the model
// snapshots for time-to-accuracy curves are taken. qsr-run checks it before it starts a
// coordinator, the worker's snapshotter again when it is created, and all three must agree, or a
// value one accepts (inf, nan) would fail only minutes later in another process.
//
// Pure function; thread-safe.
#ifndef QSR_COMMON_SNAPSHOT_INTERVAL_H_
#define QSR_COMMON_SNAPSHOT_INTERVAL_H_

#include "absl/status/status.h"

namespace qsr {

// OK for a finite number of epochs above 0; otherwise InvalidArgument naming the flag, the value
// and what is allowed.
absl::Status CheckSnapshotInterval(double every_epochs);

}  // namespace qsr

#endif  // QSR_COMMON_SNAPSHOT_INTERVAL_H_
