#include "proto/json/json_line.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "qsr/v1/run_log.pb.h"
#include "qsr/v1/tool_output.pb.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;

std::string Error(const absl::Status& s) { return std::string(s.message()); }

v1::RunLogRound ARound() {
  v1::RunLogRound r;
  r.set_round(3);
  r.set_step(12);
  r.set_lr(0.05);
  r.set_h(8);
  r.set_workers(2);
  r.set_generation(1);
  r.set_bytes(5e9);  // beyond int32: a double, printed without a fraction
  r.set_seconds(0.5);
  r.set_train_loss(1.5);
  r.set_samples(1024);
  r.set_identical(true);
  return r;
}

TEST(JsonLineTest, ALineHasTheProtoNamesInOrderAndNumbersAsNumbers) {
  EXPECT_EQ(ToJsonLine(ARound()),
            "{\"round\":3,\"step\":12,\"lr\":0.05,\"h\":8,\"workers\":2,\"generation\":1,"
            "\"bytes\":5000000000,\"seconds\":0.5,\"train_loss\":1.5,\"samples\":1024,"
            "\"identical\":true,\"digest_checked\":false}");
}

TEST(JsonLineTest, ALineReadsBackIntoTheSameMessage) {
  absl::StatusOr<v1::RunLogRound> back = ParseJsonLine<v1::RunLogRound>(ToJsonLine(ARound()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->SerializeAsString(), ARound().SerializeAsString());

  v1::CheckpointManifestRecord m;
  m.set_format(1);
  m.set_recipe("model: cnn\nname: \"a\\b\"\n");  // newlines, quotes, backslashes escaped
  v1::ManifestFileRecord* f = m.add_files();
  f->set_path("model.pt");
  f->set_bytes(9007199254740992.0);  // 2^53: the largest count a double holds exactly
  f->set_crc32(0xdeadbeefu);
  const std::string line = ToJsonLine(m);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  EXPECT_THAT(line, HasSubstr("{\"path\":\"model.pt\",\"bytes\":9007199254740992,"
                              "\"crc32\":3735928559}"));
  absl::StatusOr<v1::CheckpointManifestRecord> m_back =
      ParseJsonLine<v1::CheckpointManifestRecord>(line);
  ASSERT_TRUE(m_back.ok()) << m_back.status();
  EXPECT_EQ(m_back->SerializeAsString(), m.SerializeAsString());
}

TEST(JsonLineTest, ZerosArePrintedAndAnOptionalFieldOnlyWhenSet) {
  EXPECT_EQ(ToJsonLine(v1::PlannedRound()),
            "{\"round\":0,\"step\":0,\"lr\":0,\"h\":0,\"eval_after\":false,"
            "\"checkpoint_after\":false}");
  v1::RunLogSummary s;
  s.set_state("FINISHED");
  EXPECT_EQ(ToJsonLine(s), "{\"state\":\"FINISHED\"}");
  s.set_test_acc(0);
  EXPECT_EQ(ToJsonLine(s), "{\"state\":\"FINISHED\",\"test_acc\":0}");
  absl::StatusOr<v1::RunLogSummary> back = ParseJsonLine<v1::RunLogSummary>(ToJsonLine(s));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->has_test_acc());
  EXPECT_FALSE(back->has_test_loss());
}

TEST(JsonLineTest, NonFiniteNumbersAreWrittenAsNullAndReadBackAsAbsent) {
  v1::RunLogRound r = ARound();
  r.set_train_loss(std::nan(""));
  r.set_seconds(std::numeric_limits<double>::infinity());
  r.set_lr(-std::numeric_limits<double>::infinity());
  const std::string line = ToJsonLine(r);
  EXPECT_THAT(line, HasSubstr("\"lr\":null,"));
  EXPECT_THAT(line, HasSubstr("\"seconds\":null,"));
  EXPECT_THAT(line, HasSubstr("\"train_loss\":null,"));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("NaN")));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("Infinity")));

  absl::StatusOr<v1::RunLogRound> back = ParseJsonLine<v1::RunLogRound>(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->train_loss(), 0);
  EXPECT_EQ(back->round(), 3);

  JsonLineOptions needs_loss;
  needs_loss.required_numbers = {"train_loss"};
  absl::StatusOr<v1::RunLogRound> refused = ParseJsonLine<v1::RunLogRound>(line, needs_loss);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(Error(refused.status()), "\"train_loss\" is null, not a number");

  v1::RunLogSummary s;  // a presence field: absent after null
  s.set_state("NaN");   // a string that reads like the token stays a string
  s.set_test_loss(std::nan(""));
  EXPECT_EQ(ToJsonLine(s), "{\"state\":\"NaN\",\"test_loss\":null}");
  absl::StatusOr<v1::RunLogSummary> s_back = ParseJsonLine<v1::RunLogSummary>(ToJsonLine(s));
  ASSERT_TRUE(s_back.ok()) << s_back.status();
  EXPECT_EQ(s_back->state(), "NaN");
  EXPECT_FALSE(s_back->has_test_loss());
}

TEST(JsonLineTest, AnUnknownFieldIsRefusedNamingItAndTheFieldsThereAre) {
  absl::StatusOr<v1::PlannedRound> r =
      ParseJsonLine<v1::PlannedRound>("{\"round\":1,\"colour\":\"red\"}");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_EQ(Error(r.status()),
            "unknown field \"colour\" (qsr.v1.PlannedRound has round, step, lr, h, eval_after, "
            "checkpoint_after)");

  JsonLineOptions lenient;
  lenient.ignore_unknown_fields = true;
  r = ParseJsonLine<v1::PlannedRound>("{\"round\":1,\"colour\":\"red\"}", lenient);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->round(), 1);
  // The camelCase names protobuf also writes are the same fields.
  EXPECT_TRUE(ParseJsonLine<v1::PlannedRound>("{\"evalAfter\":true}").ok());
}

TEST(JsonLineTest, BadInputIsAnErrorNamingWhatIsWrong) {
  for (const char* bad : {"", "not json", "[1,2]", "{\"round\":"}) {
    absl::StatusOr<v1::PlannedRound> r = ParseJsonLine<v1::PlannedRound>(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_THAT(Error(r.status()), HasSubstr("not a JSON object")) << bad;
  }
  absl::StatusOr<v1::PlannedRound> r = ParseJsonLine<v1::PlannedRound>("{\"round\":\"x\"}");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Error(r.status()), HasSubstr("not a qsr.v1.PlannedRound"));
  EXPECT_FALSE(ParseJsonLine<v1::PlannedRound>("{\"round\":1e10}").ok());  // beyond int32

  JsonLineOptions needs;
  needs.required_numbers = {"step"};
  needs.required = {"eval_after"};
  EXPECT_EQ(Error(ParseJsonLine<v1::PlannedRound>("{\"eval_after\":true}", needs).status()),
            "\"step\" is missing (a number)");
  EXPECT_EQ(
      Error(
          ParseJsonLine<v1::PlannedRound>("{\"step\":\"4\",\"eval_after\":true}", needs).status()),
      "\"step\" is a string, not a number");
  EXPECT_EQ(Error(ParseJsonLine<v1::PlannedRound>("{\"step\":4}", needs).status()),
            "\"eval_after\" is missing");
  EXPECT_TRUE(ParseJsonLine<v1::PlannedRound>("{\"step\":4,\"eval_after\":false}", needs).ok());
}

TEST(JsonLineTest, AFileErrorNamesTheFileTheLineAndTheField) {
  const std::string dir = ::testing::TempDir() + "/json_line_test";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/rounds.jsonl";
  std::ofstream(path) << ToJsonLine(ARound()) << "\n\n"
                      << ToJsonLine(ARound()) << "\n{\"round\":2,\"speed\":1}\n";
  absl::StatusOr<std::vector<v1::RunLogRound>> rounds = ReadJsonLines<v1::RunLogRound>(path);
  ASSERT_FALSE(rounds.ok());
  EXPECT_THAT(Error(rounds.status()), HasSubstr(path + ":4: unknown field \"speed\""));

  std::ofstream(path) << ToJsonLine(ARound()) << "\n\n" << ToJsonLine(ARound()) << "\n";
  rounds = ReadJsonLines<v1::RunLogRound>(path);
  ASSERT_TRUE(rounds.ok()) << rounds.status();
  EXPECT_EQ(rounds->size(), 2u);  // the empty line is skipped
  EXPECT_TRUE(absl::IsNotFound(ReadJsonLines<v1::RunLogRound>(dir + "/none.jsonl").status()));
  std::filesystem::remove_all(dir);
}

TEST(JsonLineTest, ToolLinesKeepTheirConstantKeys) {
  v1::PlanSummaryLine s;
  s.set_summary(true);
  s.set_rounds(10);
  s.set_mean_h(2.5);
  EXPECT_EQ(ToJsonLine(s),
            "{\"summary\":true,\"rounds\":10,\"total_steps\":0,\"mean_h\":2.5,\"max_h\":0,"
            "\"sync_share\":0,\"alpha\":0}");
}

}  // namespace
}  // namespace qsr
