#include "cli/plot.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace qsr {
namespace {

PlotData TwoRounds() {
  PlotData data;
  data.title = "r";
  data.rounds = {{0, 4, 0.1, 2.0}, {4, 8, 0.05, 1.5}};
  return data;
}

class PlotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/plot_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(PlotTest, AMissingGnuplotSaysHowToInstallIt) {
  absl::Status s =
      RenderPlot(TwoRounds(), dir_ + "/out.svg", absl::Seconds(30), dir_ + "/no-gnuplot");
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_NE(s.message().find("cannot run " + dir_ + "/no-gnuplot"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("apt-get install gnuplot-nox"), absl::string_view::npos) << s;
}

TEST_F(PlotTest, AFailingGnuplotShowsItsOutputAndExitCode) {
  const std::string fake = dir_ + "/fake-gnuplot";
  std::ofstream(fake) << "#!/bin/sh\necho 'line 3: undefined variable' >&2\nexit 4\n";
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  absl::Status s = RenderPlot(TwoRounds(), dir_ + "/out.png", absl::Seconds(30), fake);
  EXPECT_TRUE(absl::IsInternal(s)) << s;
  EXPECT_NE(s.message().find("exit code 4"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("undefined variable"), absl::string_view::npos) << s;
}

TEST_F(PlotTest, AGnuplotThatHangsIsStoppedAtTheTimeLimit) {
  const std::string fake = dir_ + "/slow-gnuplot";
  std::ofstream(fake) << "#!/bin/sh\nexec sleep 60\n";
  std::filesystem::permissions(fake, std::filesystem::perms::owner_all);
  const absl::Time start = absl::Now();
  absl::Status s = RenderPlot(TwoRounds(), dir_ + "/out.png", absl::Milliseconds(300), fake);
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30)) << "the child was not stopped";
}

TEST_F(PlotTest, GnuplotDrawsThePicture) {
  const std::string out = dir_ + "/out.svg";
  absl::Status s = RenderPlot(TwoRounds(), out, absl::Seconds(60));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GT(std::filesystem::file_size(out), 0u);
}

}  // namespace
}  // namespace qsr
