// How a training process's heap treats the memory a step frees.
//
// Every training step allocates and frees the same large buffers (activations, gradients,
// workspaces). glibc serves a block above its mmap threshold (128 KiB at start, raised on the fly
// up to 32 MiB) with its own mmap and unmaps it on free, and it gives the top of the heap back to
// the kernel once more than the trim threshold is free. Either way the next step's buffers are
// fresh pages that the kernel must fault in and zero. For the `cnn` at batch 128 on one CPU thread
// that was 13,000 page faults and a fifth of the step in the kernel (bench/FINDINGS.md 1).
//
// kKeep makes the process keep what it frees: no block is served by its own mmap, and the heap
// is never trimmed, so the second step on reuses the first step's pages. The cost is that the
// resident size stays at the high-water mark of the run, which is what a training process (and
// PyTorch's CUDA caching allocator on the device) holds anyway.
//
// Process-wide; call once from main() before the first large allocation, before other threads
// start. Pure libc, no torch.
#ifndef QSR_WORKER_HEAP_POLICY_H_
#define QSR_WORKER_HEAP_POLICY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsr {

enum class HeapPolicy {
  kKeep,    // freed memory stays in the heap for reuse (the worker's default)
  kSystem,  // glibc's defaults, or whatever GLIBC_TUNABLES says
};

// "keep" or "system"; anything else is INVALID_ARGUMENT naming the allowed values.
absl::StatusOr<HeapPolicy> ParseHeapPolicy(const std::string& name);

// Parses `name` and applies it: what a main() does with its --heap flag. INVALID_ARGUMENT for a
// bad name (exit 2), INTERNAL if libc refuses (exit 1).
absl::Status ApplyHeapPolicy(const std::string& name);

// Applies `policy` to this process. kSystem changes nothing. INTERNAL if libc refuses a setting.
// Another process gets the same heap as kKeep from the environment:
//   GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615
// (bench/step_throughput.py gives it to the Python peer).
absl::Status ApplyHeapPolicy(HeapPolicy policy);

}  // namespace qsr

#endif  // QSR_WORKER_HEAP_POLICY_H_
