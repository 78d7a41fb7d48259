#include "cli/run_dir.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace qsr {
namespace {

// A line as the coordinator's run log writes it: the RoundRecord's fields and "generation".
constexpr char kRound[] =
    "{\"round\":3,\"step\":12,\"lr\":0.05,\"h\":8,\"workers\":2,\"generation\":1,\"bytes\":4096,"
    "\"seconds\":0.5,\"train_loss\":1.5,\"samples\":1024,\"identical\":true,"
    "\"digest_checked\":false}";

TEST(RunDirTest, ARoundLineIsARoundRecord) {
  absl::StatusOr<v1::RoundRecord> r = ParseRoundLine(kRound);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->round(), 3);
  EXPECT_EQ(r->step(), 12);
  EXPECT_DOUBLE_EQ(r->lr(), 0.05);
  EXPECT_EQ(r->h(), 8);
  EXPECT_EQ(r->workers(), 2);
  EXPECT_EQ(r->bytes(), 4096);
  EXPECT_DOUBLE_EQ(r->train_loss(), 1.5);
  EXPECT_TRUE(r->identical());
}

TEST(RunDirTest, ARoundLineWithoutANeededNumberIsAnError) {
  // train_loss is null when the loss was not finite: not a row of zeros.
  absl::StatusOr<v1::RoundRecord> r =
      ParseRoundLine("{\"step\":0,\"lr\":0.1,\"h\":4,\"train_loss\":null}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("train_loss"), std::string::npos) << r.status();
  EXPECT_FALSE(ParseRoundLine("{\"step\":0,\"lr\":0.1,\"train_loss\":1}").ok());  // no h
  EXPECT_FALSE(ParseRoundLine("{\"step\":\"x\",\"lr\":0.1,\"h\":4,\"train_loss\":1}").ok());
  EXPECT_FALSE(ParseRoundLine("not json").ok());
  EXPECT_FALSE(ParseRoundLine("[1,2]").ok());
}

TEST(RunDirTest, AnEvalLineNeedsOnlyStepAndAccuracy) {
  absl::StatusOr<v1::EvalReport> e = ParseEvalLine(
      "{\"step\":40,\"epoch\":1.5,\"test_loss\":0.4,\"test_acc\":0.87,\"test_acc5\":0.99,"
      "\"examples\":10000,\"elapsed_s\":3.5}");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->step(), 40);
  EXPECT_DOUBLE_EQ(e->test_acc(), 0.87);
  EXPECT_DOUBLE_EQ(e->test_acc5(), 0.99);
  EXPECT_EQ(e->examples(), 10000);
  absl::StatusOr<v1::EvalReport> bare = ParseEvalLine("{\"step\":4,\"test_acc\":0.5}");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->test_loss(), 0);
  EXPECT_FALSE(ParseEvalLine("{\"step\":12}").ok());
}

TEST(RunDirTest, TheSummarySaysStateAndNumbersAndMinusOneForWhatIsAbsent) {
  absl::StatusOr<RunSummary> s = ParseRunSummary(
      "{\"run_id\":\"r\\\"7\",\"state\":\"FINISHED\",\"message\":\"\",\"model\":\"mlp\","
      "\"optimizer\":\"localsgd\",\"workers\":2,\"rounds\":17,\"bytes_per_worker\":123456789,"
      "\"elapsed_s\":12.5,\"test_acc\":0.91}\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->run_id, "r\"7");  // escapes are decoded, which a substring scan did not do
  EXPECT_EQ(s->state, "FINISHED");
  EXPECT_TRUE(s->has_model);
  EXPECT_EQ(s->model, "mlp");
  EXPECT_EQ(s->optimizer, "localsgd");
  EXPECT_DOUBLE_EQ(s->rounds, 17);
  EXPECT_DOUBLE_EQ(s->bytes_per_worker, 123456789);
  EXPECT_DOUBLE_EQ(s->elapsed_s, 12.5);
  EXPECT_DOUBLE_EQ(s->test_acc, 0.91);

  absl::StatusOr<RunSummary> bare = ParseRunSummary("{\"state\":\"FAILED\"}");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->state, "FAILED");
  EXPECT_FALSE(bare->has_model);
  EXPECT_EQ(bare->test_acc, -1);
  EXPECT_EQ(bare->rounds, -1);
  EXPECT_FALSE(ParseRunSummary("").ok());
  EXPECT_FALSE(ParseRunSummary("{\"state\":").ok());
}

TEST(RunDirTest, AFileErrorNamesTheFileAndTheLine) {
  const std::string dir = ::testing::TempDir() + "/run_dir_test";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/rounds.jsonl";
  std::ofstream(path) << kRound << "\n\n" << kRound << "\n{\"step\":1}\n";
  absl::StatusOr<std::vector<v1::RoundRecord>> rounds = ReadRoundsJsonl(path);
  ASSERT_FALSE(rounds.ok());
  EXPECT_NE(rounds.status().message().find(path + ":4"), std::string::npos) << rounds.status();

  std::ofstream(path) << kRound << "\n\n" << kRound << "\n";
  rounds = ReadRoundsJsonl(path);
  ASSERT_TRUE(rounds.ok()) << rounds.status();
  EXPECT_EQ(rounds->size(), 2u);  // the empty line is skipped
  EXPECT_TRUE(absl::IsNotFound(ReadEvalsJsonl(dir + "/nowhere.jsonl").status()));
  EXPECT_EQ(ReadFileOrEmpty(dir + "/nowhere.jsonl"), "");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsr
