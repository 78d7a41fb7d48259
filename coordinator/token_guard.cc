#include "coordinator/token_guard.h"

namespace qsr {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  // Walk the longer of the two whole, so the time does not reveal where they first differ.
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  // Read through a volatile so the compiler cannot turn the loop into an early exit.
  volatile unsigned char result = diff;
  return result == 0;
}

absl::Status TokenGuard::Check(const absl::string_view* presented, Access access) const {
  if (token_.empty()) return absl::OkStatus();
  if (access == Access::kRead && !protect_reads_) return absl::OkStatus();
  if (presented == nullptr) {
    return absl::UnauthenticatedError(
        "this coordinator requires the run token (give the client --token-file or $QSR_TOKEN)");
  }
  if (!ConstantTimeEquals(*presented, token_)) {
    return absl::UnauthenticatedError("the run token does not match the coordinator's");
  }
  return absl::OkStatus();
}

}  // namespace qsr
