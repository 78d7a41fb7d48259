// Jitter for periodic senders.
//
// Every worker of a group starts its periodic senders (heartbeats, reports) at the same moment,
// since the Join answers come together. At a fixed interval they would reach the coordinator as
// one burst of K calls per interval, for ever (at 1,024 workers such a burst costs it ~100 ms).
// Waiting a random 0.75-1.25 of the interval instead spreads them out within a few periods; the
// coordinator's timeouts are many intervals long.
//
// Pure function; thread-safe as far as `random` is.
#ifndef QSR_COMMON_JITTER_H_
#define QSR_COMMON_JITTER_H_

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"

namespace qsr {

// A uniformly random wait in [0.75, 1.25] x `interval`.
absl::Duration Jittered(absl::Duration interval, absl::BitGenRef random);

}  // namespace qsr

#endif  // QSR_COMMON_JITTER_H_
