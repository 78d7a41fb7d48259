#include "cli/route_address.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace qsr {
namespace {

using ::testing::HasSubstr;

TEST(RouteAddressTest, SplitsHostAndPort) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(SplitHostPort("10.1.2.3:7070", &host, &port).ok());
  EXPECT_EQ(host, "10.1.2.3");
  EXPECT_EQ(port, 7070);
  ASSERT_TRUE(SplitHostPort("[::1]:80", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  for (const char* bad : {"10.1.2.3", ":7070", "h:0", "h:70000", "h:x"}) {
    absl::Status s = SplitHostPort(bad, &host, &port);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(std::string("\"") + bad + "\"")) << bad;
  }
}

TEST(RouteAddressTest, TheRouteToLoopbackLeavesFromLoopback) {
  absl::StatusOr<std::string> a = LocalAddressTowards("127.0.0.1:7070");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "127.0.0.1");
  EXPECT_TRUE(IsLoopbackHost(*a));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("10.1.2.3"));
}

TEST(RouteAddressTest, AnUnresolvableHostIsNamed) {
  absl::StatusOr<std::string> a = LocalAddressTowards("no-such-host.invalid:7070");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("no-such-host.invalid"));
}

}  // namespace
}  // namespace qsr
