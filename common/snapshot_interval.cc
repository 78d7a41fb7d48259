#include "common/snapshot_interval.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace qsr {

absl::Status CheckSnapshotInterval(double every_epochs) {
  // Written so that nan fails too: every comparison with it is false.
  if (every_epochs > 0 && std::isfinite(every_epochs)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--snapshot-every ", every_epochs,
                   ": allowed: epochs between snapshots, a finite number above 0 (e.g. 0.0625 "
                   "for 1/16 epoch)"));
}

}  // namespace qsr
