#include "coordinator/token_guard.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

using Access = TokenGuard::Access;

TEST(TokenGuardTest, NoTokenLeavesEverythingOpen) {
  TokenGuard guard("", /*protect_reads=*/true);
  EXPECT_FALSE(guard.enabled());
  EXPECT_TRUE(guard.Check(nullptr, Access::kChange).ok());
  EXPECT_TRUE(guard.Check(nullptr, Access::kRead).ok());
}

TEST(TokenGuardTest, ChangesNeedTheToken) {
  const std::string secret = "s3cret-value";
  TokenGuard guard(secret, /*protect_reads=*/false);
  absl::string_view right = secret, wrong = "s3cret-valuf", prefix = "s3cret",
                    longer = "s3cret-value!";
  EXPECT_TRUE(guard.Check(&right, Access::kChange).ok());
  for (const absl::string_view* presented :
       {static_cast<absl::string_view*>(nullptr), &wrong, &prefix, &longer}) {
    absl::Status s = guard.Check(presented, Access::kChange);
    EXPECT_TRUE(absl::IsUnauthenticated(s)) << s;
    EXPECT_FALSE(absl::StrContains(s.message(), secret)) << s;
    if (presented != nullptr) {
      EXPECT_FALSE(absl::StrContains(s.message(), *presented)) << s;
    }
  }
  // Reads stay open without protect_reads.
  EXPECT_TRUE(guard.Check(nullptr, Access::kRead).ok());
  EXPECT_TRUE(guard.Check(&wrong, Access::kRead).ok());
}

TEST(TokenGuardTest, ProtectedReadsNeedTheToken) {
  TokenGuard guard("abc", /*protect_reads=*/true);
  absl::string_view right = "abc";
  EXPECT_TRUE(absl::IsUnauthenticated(guard.Check(nullptr, Access::kRead)));
  EXPECT_TRUE(guard.Check(&right, Access::kRead).ok());
}

TEST(TokenGuardTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_FALSE(ConstantTimeEquals(absl::string_view("a\0", 2), "a"));
}

}  // namespace
}  // namespace qsr
