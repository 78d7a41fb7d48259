#include "cli/process_group.h"

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "cli/run_dir.h"

namespace qsr {
namespace {

// Every wait in these tests has this deadline; the children are shells that end at once.
constexpr absl::Duration kDeadline = absl::Seconds(30);

class ProcessGroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/process_group_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Pumps until child `i` has exited; false at the deadline.
  static bool AwaitExit(ProcessGroup& group, int i) {
    const absl::Time deadline = absl::Now() + kDeadline;
    while (!group.ExitCode(i) && absl::Now() < deadline) group.Pump(absl::Milliseconds(20));
    return group.ExitCode(i).has_value();
  }

  std::string dir_;
};

TEST_F(ProcessGroupTest, AnUnpipedChildWritesItsLogItself) {
  ProcessGroup group;
  ProcessGroup::Output out;
  out.echo = false;
  out.piped = false;
  out.log_path = dir_ + "/child.log";
  ASSERT_TRUE(group.Spawn("c", {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}, out).ok());
  ASSERT_TRUE(AwaitExit(group, 0));
  EXPECT_EQ(*group.ExitCode(0), 3);
  const std::string log = ReadFileOrEmpty(out.log_path);
  EXPECT_NE(log.find("out\n"), std::string::npos) << log;
  EXPECT_NE(log.find("err\n"), std::string::npos) << log;
}

TEST_F(ProcessGroupTest, WhatAnExitedChildLeftInItsPipeReachesItsLog) {
  ProcessGroup group;
  ProcessGroup::Output out;
  out.echo = false;
  out.log_path = dir_ + "/child.log";
  // The last line has no newline: it is logged with one.
  ASSERT_TRUE(group.Spawn("c", {"/bin/sh", "-c", "printf 'first\\nlast'"}, out).ok());
  ASSERT_TRUE(AwaitExit(group, 0));
  group.TerminateAll(absl::ZeroDuration());
  EXPECT_EQ(ReadFileOrEmpty(out.log_path), "first\nlast\n");
}

TEST_F(ProcessGroupTest, AProgramThatCannotStartExitsCannotExecSayingWhy) {
  ProcessGroup group;
  ProcessGroup::Output out;
  out.echo = false;
  out.log_path = dir_ + "/child.log";
  ASSERT_TRUE(group.Spawn("c", {dir_ + "/no-such-program"}, out).ok());
  ASSERT_TRUE(AwaitExit(group, 0));
  EXPECT_EQ(*group.ExitCode(0), kCannotExec);
  group.TerminateAll(absl::ZeroDuration());
  EXPECT_NE(ReadFileOrEmpty(out.log_path).find("cannot run " + dir_ + "/no-such-program"),
            std::string::npos);
}

TEST_F(ProcessGroupTest, WaitForPortFileReturnsThePortOnceWritten) {
  ProcessGroup group;
  const std::string port_file = dir_ + "/port";
  ASSERT_TRUE(
      group.Spawn("server", {"/bin/sh", "-c", "echo 4242 > " + port_file + "; exec sleep 60"})
          .ok());
  volatile std::sig_atomic_t signal = 0;
  absl::StatusOr<std::string> port = WaitForPortFile(group, 0, port_file, kDeadline, &signal);
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_EQ(*port, "4242");
  group.TerminateAll(absl::Seconds(5));
}

TEST_F(ProcessGroupTest, WaitForPortFileEndsWhenTheChildExitsOrASignalComes) {
  ProcessGroup group;
  ASSERT_TRUE(group.Spawn("server", {"/bin/sh", "-c", "exit 1"}).ok());
  volatile std::sig_atomic_t signal = 0;
  absl::StatusOr<std::string> port = WaitForPortFile(group, 0, dir_ + "/never", kDeadline, &signal);
  EXPECT_TRUE(absl::IsUnavailable(port.status())) << port.status();

  ProcessGroup waiting;
  ASSERT_TRUE(waiting.Spawn("server", {"/bin/sh", "-c", "exec sleep 60"}).ok());
  signal = SIGTERM;
  port = WaitForPortFile(waiting, 0, dir_ + "/never", kDeadline, &signal);
  EXPECT_TRUE(absl::IsCancelled(port.status())) << port.status();
  waiting.TerminateAll(absl::Seconds(5));
}

}  // namespace
}  // namespace qsr
