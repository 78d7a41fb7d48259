#include "rendezvous/store.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;

TEST(InMemoryStoreTest, GetReturnsValuesInOrder) {
  InMemoryStore store;
  ASSERT_TRUE(store.Set("a", "1").ok());
  ASSERT_TRUE(store.Set("b", "2").ok());
  ASSERT_TRUE(store.Set("a", "3").ok());  // replaces
  auto values = store.Get({"b", "a"}, absl::Now() + absl::Seconds(1));
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(*values, (std::vector<std::string>{"2", "3"}));
}

TEST(InMemoryStoreTest, GetWaitsForAKeySetByAnotherThread) {
  InMemoryStore store;
  std::thread setter([&store] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_TRUE(store.Set("addr", "10.0.0.1:1234").ok());
  });
  auto values = store.Get({"addr"}, absl::Now() + absl::Seconds(30));
  setter.join();
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->at(0), "10.0.0.1:1234");
}

TEST(InMemoryStoreTest, DeadlineExceededNamesTheMissingKeys) {
  InMemoryStore store;
  ASSERT_TRUE(store.Set("present", "x").ok());
  auto values = store.Get({"present", "missing"}, absl::Now() + absl::Milliseconds(20));
  ASSERT_EQ(values.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(values.status().message()), HasSubstr("missing"));
  EXPECT_THAT(std::string(values.status().message()), ::testing::Not(HasSubstr("present")));
  EXPECT_EQ(store.Wait({"missing"}, absl::Now()).code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(PrefixStoreTest, ScopesKeys) {
  InMemoryStore base;
  PrefixStore gen1("run/gen1", &base);
  PrefixStore gen2("run/gen2", &base);
  ASSERT_TRUE(gen1.Set("rank0", "old").ok());
  ASSERT_TRUE(gen2.Set("rank0", "new").ok());

  auto raw = base.Get({"run/gen1/rank0", "run/gen2/rank0"}, absl::Now() + absl::Seconds(1));
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(*raw, (std::vector<std::string>{"old", "new"}));
  auto scoped = gen2.Get({"rank0"}, absl::Now() + absl::Seconds(1));
  ASSERT_TRUE(scoped.ok()) << scoped.status();
  EXPECT_EQ(scoped->at(0), "new");

  // A key of another scope is not visible: a re-formed group never reads a stale value.
  PrefixStore gen3("run/gen3", &base);
  EXPECT_EQ(gen3.Wait({"rank0"}, absl::Now() + absl::Milliseconds(10)).code(),
            absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace qsr
