// worker/heap_policy: what each policy does with a large block, observed through glibc's own
// accounting (mallinfo2), so that the result does not depend on the kernel's page size or THP.
// Each case runs in a fresh process (a threadsafe death test), since a policy is process-wide.
#include "worker/heap_policy.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

namespace qsr {
namespace {

// Larger than glibc's largest dynamic mmap threshold (32 MiB), like a step's biggest activations.
constexpr size_t kBlock = size_t{48} << 20;

struct BlockAccounting {
  size_t mapped_while_live;  // bytes in blocks with their own mapping, growth while held
  size_t heap_after_free;    // bytes the heap still holds from the kernel once freed
};

BlockAccounting AllocateTouchFree() {
  struct mallinfo2 before = mallinfo2();
  void* p = std::malloc(kBlock);
  if (p == nullptr) std::_Exit(3);
  std::memset(p, 1, kBlock);
  struct mallinfo2 live = mallinfo2();
  std::free(p);
  struct mallinfo2 after = mallinfo2();
  return {live.hblkhd - before.hblkhd, after.arena};
}

// Runs in the child: applies `policy`, exits 0 when `ok` holds for the block's accounting.
template <typename Pred>
[[noreturn]] void CheckInChild(HeapPolicy policy, Pred ok) {
  if (!ApplyHeapPolicy(policy).ok()) std::_Exit(2);
  BlockAccounting a = AllocateTouchFree();
  std::fprintf(stderr, "mapped_while_live=%zu heap_after_free=%zu\n", a.mapped_while_live,
               a.heap_after_free);
  std::_Exit(ok(a) ? 0 : 1);
}

TEST(HeapPolicyTest, ParsesTheTwoNamesAndRejectsOthersNamingThem) {
  EXPECT_EQ(*ParseHeapPolicy("keep"), HeapPolicy::kKeep);
  EXPECT_EQ(*ParseHeapPolicy("system"), HeapPolicy::kSystem);
  for (const char* bad : {"", "Keep", "reuse"}) {
    absl::StatusOr<HeapPolicy> p = ParseHeapPolicy(bad);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find("keep"), std::string::npos);
    EXPECT_NE(p.status().message().find("system"), std::string::npos);
  }
}

TEST(HeapPolicyTest, KeepServesALargeBlockFromTheHeapAndKeepsItOnceFreed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CheckInChild(HeapPolicy::kKeep,
                           [](const BlockAccounting& a) {
                             return a.mapped_while_live == 0 && a.heap_after_free >= kBlock;
                           }),
              testing::ExitedWithCode(0), "");
}

// The contrast that makes the case above mean something: with glibc's defaults the same block is
// mapped on its own and handed back on free, so the next one faults in fresh pages.
TEST(HeapPolicyTest, SystemMapsALargeBlockOnItsOwnAndReturnsIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CheckInChild(HeapPolicy::kSystem,
                           [](const BlockAccounting& a) {
                             return a.mapped_while_live >= kBlock && a.heap_after_free < kBlock;
                           }),
              testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace qsr
