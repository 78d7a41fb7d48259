#include "coordinator/kv_store.h"

#include <optional>

#include "gtest/gtest.h"

namespace qsr {
namespace {

using Result = std::optional<absl::StatusOr<std::vector<std::string>>>;

KvStore::GetCallback Capture(Result* out) {
  return [out](absl::StatusOr<std::vector<std::string>> r) { *out = std::move(r); };
}

TEST(KvStoreTest, GetOfPresentKeysAnswersAtOnce) {
  KvStore store;
  ASSERT_TRUE(store.Set("a", "1").ok());
  ASSERT_TRUE(store.Set("b", "2").ok());
  Result r;
  ASSERT_TRUE(store.Get({"b", "a"}, absl::Now() + absl::Seconds(1), Capture(&r)).ok());
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(r->ok());
  EXPECT_EQ(**r, (std::vector<std::string>{"2", "1"}));
}

TEST(KvStoreTest, GetWaitsForTheLastKey) {
  KvStore store;
  Result r;
  ASSERT_TRUE(store.Get({"x", "y"}, absl::Now() + absl::Seconds(10), Capture(&r)).ok());
  ASSERT_TRUE(store.Set("x", "1").ok());
  EXPECT_FALSE(r.has_value());
  ASSERT_TRUE(store.Set("y", "2").ok());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(**r, (std::vector<std::string>{"1", "2"}));
}

TEST(KvStoreTest, ExpiredWaiterNamesMissingKeys) {
  KvStore store;
  Result r;
  absl::Time deadline = absl::Now() + absl::Seconds(1);
  ASSERT_TRUE(store.Set("x", "1").ok());
  ASSERT_TRUE(store.Get({"x", "missing"}, deadline, Capture(&r)).ok());
  store.ExpireWaiters(deadline - absl::Milliseconds(1));
  EXPECT_FALSE(r.has_value());
  store.ExpireWaiters(deadline);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(absl::IsDeadlineExceeded(r->status()));
  EXPECT_NE(r->status().message().find("missing"), std::string::npos);
  EXPECT_EQ(r->status().message().find("x,"), std::string::npos);
}

TEST(KvStoreTest, RejectsBadInput) {
  KvStore::Limits limits;
  limits.max_key_bytes = 8;
  limits.max_value_bytes = 16;
  limits.max_total_bytes = 40;
  limits.max_keys_per_get = 2;
  KvStore store(limits);
  EXPECT_TRUE(absl::IsInvalidArgument(store.Set("", "v")));
  EXPECT_TRUE(absl::IsInvalidArgument(store.Set("waytoolongkey", "v")));
  EXPECT_TRUE(absl::IsInvalidArgument(store.Set("k", std::string(17, 'v'))));
  ASSERT_TRUE(store.Set("k1", std::string(16, 'v')).ok());
  ASSERT_TRUE(store.Set("k2", std::string(16, 'v')).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(store.Set("k3", std::string(16, 'v'))));
  // Replacing a value frees the old bytes.
  EXPECT_TRUE(store.Set("k2", "small").ok());
  Result r;
  EXPECT_TRUE(absl::IsInvalidArgument(store.Get({}, absl::Now(), Capture(&r))));
  EXPECT_TRUE(absl::IsInvalidArgument(store.Get({"a", "b", "c"}, absl::Now(), Capture(&r))));
  EXPECT_FALSE(r.has_value());
}

TEST(KvStoreTest, KeysArePrintableAndLimitsAreNamed) {
  KvStore store;
  absl::Status s = store.Set(std::string("a\nb", 3), "v");
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("printable"), std::string::npos) << s;
  Result r;
  s = store.Get({std::string("k\0", 2)}, absl::Now(), Capture(&r));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_FALSE(r.has_value());
  s = store.Set(std::string(513, 'k'), "v");
  EXPECT_NE(s.message().find("512"), std::string::npos) << s;
  // The defaults: 4 MiB values, a spaced key is fine.
  EXPECT_TRUE(store.Set("run/g1 c0", std::string(4 << 20, 'v')).ok());
  s = store.Set("big", std::string((4 << 20) + 1, 'v'));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("value"), std::string::npos) << s;
}

TEST(KvStoreTest, ErasePrefixRemovesAGeneration) {
  KvStore store;
  ASSERT_TRUE(store.Set("run/g1/c0/0", "addr").ok());
  ASSERT_TRUE(store.Set("run/g2/c0/0", "addr").ok());
  store.ErasePrefix("run/g1/");
  Result r;
  ASSERT_TRUE(store.Get({"run/g1/c0/0"}, absl::Now(), Capture(&r)).ok());
  EXPECT_FALSE(r.has_value());
  store.ExpireWaiters(absl::Now());
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->ok());
  Result r2;
  ASSERT_TRUE(store.Get({"run/g2/c0/0"}, absl::Now(), Capture(&r2)).ok());
  EXPECT_TRUE(r2.has_value() && r2->ok());
}

}  // namespace
}  // namespace qsr
