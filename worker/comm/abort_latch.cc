#include "worker/comm/abort_latch.h"

#include "absl/strings/str_cat.h"

namespace qsr {

bool AbortLatch::Set(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (set_.load()) return false;
  // The reason is written before the flag, so whoever sees the flag finds the reason.
  reason_ = reason.empty() ? "aborted" : reason;
  set_.store(true);
  return true;
}

std::string AbortLatch::reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reason_;
}

absl::Status AbortLatch::AbortedStatus(const char* backend, int rank, int size) const {
  return absl::FailedPreconditionError(absl::StrCat(backend, " communicator (rank ", rank, " of ",
                                                    size, ") was aborted: ", reason()));
}

}  // namespace qsr
