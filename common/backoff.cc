#include "common/backoff.h"

#include <algorithm>

#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"

namespace qsr {

absl::Status ValidateBackoff(const BackoffPolicy& backoff) {
  if (backoff.base <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backoff base is ", absl::FormatDuration(backoff.base), "; allowed: more than 0"));
  }
  if (backoff.cap < backoff.base) {
    return absl::InvalidArgumentError(
        absl::StrCat("backoff cap is ", absl::FormatDuration(backoff.cap),
                     "; allowed: at least the base, ", absl::FormatDuration(backoff.base)));
  }
  if (!(backoff.jitter >= 0 && backoff.jitter < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("backoff jitter is ", backoff.jitter, "; allowed: 0 <= jitter < 1"));
  }
  return absl::OkStatus();
}

absl::Duration BackoffDelay(const BackoffPolicy& backoff, int attempt) {
  // Doubling stops at the cap, so a large attempt neither loops long nor overflows.
  absl::Duration delay = backoff.base;
  for (int i = 0; i < attempt && delay < backoff.cap; ++i) delay *= 2;
  return std::min(delay, backoff.cap);
}

absl::Duration BackoffDelay(const BackoffPolicy& backoff, int attempt, absl::BitGenRef random) {
  const absl::Duration delay = BackoffDelay(backoff, attempt);
  if (backoff.jitter <= 0) return delay;
  return delay *
         absl::Uniform(absl::IntervalClosed, random, 1 - backoff.jitter, 1 + backoff.jitter);
}

}  // namespace qsr
