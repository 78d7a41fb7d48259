// Backoff: how long to wait before the next try of something that failed (a connection, a
// restart, a poll), as one pure rule so every retry loop backs off the same way.
//
// Try `attempt` (0 for the wait after the first failure) waits base x 2^attempt, at most `cap`;
// with `jitter` = j > 0 that wait is drawn uniformly from [1 - j, 1 + j] x of it (still at most
// cap x (1 + j)), so that processes that failed together do not retry together.
//
// A periodic sender (heartbeats, reports) waits BackoffDelay({interval, interval,
// kPeriodicJitter}, 0, random): every worker of a group starts its senders at the same moment,
// since the Join answers come together, and at a fixed interval they would reach the coordinator
// as one burst of K calls per interval for ever (at 1,024 workers such a burst costs it ~100 ms).
// A random 0.75-1.25 of the interval spreads them out within a few periods; the coordinator's
// timeouts are many intervals long.
//
// Pure functions: no clock, no sleeping (the caller sleeps or schedules); thread-safe as far as
// `random` is.
#ifndef QSR_COMMON_BACKOFF_H_
#define QSR_COMMON_BACKOFF_H_

#include "absl/random/bit_gen_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace qsr {

struct BackoffPolicy {
  absl::Duration base = absl::Milliseconds(100);
  absl::Duration cap = absl::Seconds(10);
  double jitter = 0;  // 0 <= jitter < 1
};

// The jitter of a periodic sender's wait: [0.75, 1.25] x its interval.
inline constexpr double kPeriodicJitter = 0.25;

// InvalidArgument naming the bad field unless 0 < base <= cap and 0 <= jitter < 1.
absl::Status ValidateBackoff(const BackoffPolicy& backoff);

// The wait after `attempt` failures (attempt >= 0; a negative one counts as 0), without jitter.
absl::Duration BackoffDelay(const BackoffPolicy& backoff, int attempt);

// The same, with backoff.jitter applied from `random`.
absl::Duration BackoffDelay(const BackoffPolicy& backoff, int attempt, absl::BitGenRef random);

}  // namespace qsr

#endif  // QSR_COMMON_BACKOFF_H_
