// TokenGuard: the coordinator's check of the shared run token on each call.
//
// Which calls need the token: every call that changes the run (Join, Heartbeat, NextRounds,
// Report, Leave, KvSet, KvGet, Stop) once a token is configured; the status reads (GetStatus,
// ListRounds, ListEvals) only with `protect_reads`. A refused call gets UNAUTHENTICATED with a
// message that says which (missing or wrong) but never echoes a token. The comparison takes the
// same time whatever the presented token's contents.
//
// Immutable after construction; thread-safe.
#ifndef QSR_COORDINATOR_TOKEN_GUARD_H_
#define QSR_COORDINATOR_TOKEN_GUARD_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace qsr {

class TokenGuard {
 public:
  enum class Access {
    kRead,    // status reads
    kChange,  // everything else
  };

  // An empty `token` leaves every call open.
  TokenGuard(std::string token, bool protect_reads)
      : token_(std::move(token)), protect_reads_(protect_reads) {}

  bool enabled() const { return !token_.empty(); }

  // `presented` is the call's token, or null when it carried none.
  absl::Status Check(const absl::string_view* presented, Access access) const;

 private:
  const std::string token_;
  const bool protect_reads_;
};

// Equality of two byte strings in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace qsr

#endif  // QSR_COORDINATOR_TOKEN_GUARD_H_
