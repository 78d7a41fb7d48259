#include "serving/port_file.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

TEST(PortFileTest, WritesThePortAndANewlineAndNoTemporaryFile) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/port";
  testing::WriteFile(path, "an older run's port\n");
  ASSERT_TRUE(WritePortFile(path, 40123).ok());
  EXPECT_EQ(testing::ReadFile(path), "40123\n");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(PortFileTest, EmptyPathWritesNothing) {
  testing::TempDir dir;
  EXPECT_TRUE(WritePortFile("", 40123).ok());
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(PortFileTest, UnwritablePathIsAnErrorNamingIt) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/no-such-dir/port";
  absl::Status s = WritePortFile(path, 40123);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  EXPECT_NE(s.message().find("No such file or directory"), std::string::npos) << s;
}

TEST(PortFileTest, PathThatIsADirectoryIsAnErrorAndLeavesNoTemporaryFile) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/port";
  std::filesystem::create_directory(path);
  absl::Status s = WritePortFile(path, 40123);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find(path), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace qsr
