#include "worker/heap_policy.h"

#include <malloc.h>

namespace qsr {

absl::StatusOr<HeapPolicy> ParseHeapPolicy(const std::string& name) {
  if (name == "keep") return HeapPolicy::kKeep;
  if (name == "system") return HeapPolicy::kSystem;
  return absl::InvalidArgumentError("heap policy '" + name +
                                    "' is not one of: keep (reuse freed memory), system "
                                    "(glibc's defaults)");
}

absl::Status ApplyHeapPolicy(HeapPolicy policy) {
  if (policy == HeapPolicy::kSystem) return absl::OkStatus();
  // M_MMAP_MAX = 0: no block gets its own mapping, however large (glibc still maps when the heap
  // cannot grow). M_TRIM_THRESHOLD = -1: never hand the heap's top back.
  if (mallopt(M_MMAP_MAX, 0) != 1 || mallopt(M_TRIM_THRESHOLD, -1) != 1) {
    return absl::InternalError("mallopt refused the keep heap policy");
  }
  return absl::OkStatus();
}

absl::Status ApplyHeapPolicy(const std::string& name) {
  absl::StatusOr<HeapPolicy> policy = ParseHeapPolicy(name);
  if (!policy.ok()) return policy.status();
  return ApplyHeapPolicy(*policy);
}

}  // namespace qsr
