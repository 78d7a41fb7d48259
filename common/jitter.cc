#include "common/jitter.h"

#include "absl/random/distributions.h"

namespace qsr {

absl::Duration Jittered(absl::Duration interval, absl::BitGenRef random) {
  return interval * absl::Uniform(absl::IntervalClosed, random, 0.75, 1.25);
}

}  // namespace qsr
