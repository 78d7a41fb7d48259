#include "cli/status_format.h"

#include <gtest/gtest.h>

#include "google/protobuf/util/json_util.h"
#include "proto/json/json_line.h"

namespace qsr {
namespace {

v1::GetStatusReply Status(int64_t step, int64_t total, double elapsed_s) {
  v1::GetStatusReply s;
  s.set_step(step);
  s.set_total_steps(total);
  s.set_elapsed_s(elapsed_s);
  return s;
}

TEST(StatusFormatTest, EtaFromTheRateSinceTheFirstStatus) {
  // 100 steps in the last 10 s, 500 left: 50 s.
  EXPECT_DOUBLE_EQ(EstimateEtaSeconds(Status(300, 800, 60), 200, 10), 50);
}

TEST(StatusFormatTest, EtaFromTheRunsAverageBeforeAnyNewStep) {
  // No step since: 200 steps in 40 s over the run, 600 left: 120 s.
  EXPECT_DOUBLE_EQ(EstimateEtaSeconds(Status(200, 800, 40), 200, 5), 120);
}

TEST(StatusFormatTest, EtaUnknownBeforeTheFirstStep) {
  EXPECT_EQ(EstimateEtaSeconds(Status(0, 800, 3), 0, 5), -1);
  EXPECT_NE(WatchLine(Status(0, 800, 3), -1).find("ETA --"), std::string::npos);
}

TEST(StatusFormatTest, JsonIsProtobufsAndReadsBackIntoTheMessage) {
  v1::GetStatusReply s = Status(12, 936, 3.5);
  s.set_state("RUNNING");
  s.set_world_size(4);
  v1::WorkerInfo* w = s.add_worker_info();
  w->set_rank(1);
  w->set_worker_id("n0-w1");
  const std::string json = StatusJson(s);
  EXPECT_EQ(json.find('\n'), std::string::npos) << "one line: " << json;
  EXPECT_NE(json.find("\"total_steps\":\"936\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"world_size\":4"), std::string::npos) << json;
  EXPECT_NE(json.find("\"stop_requested\":false"), std::string::npos) << json;  // defaults too
  EXPECT_NE(json.find("\"worker_id\":\"n0-w1\""), std::string::npos) << json;
  v1::GetStatusReply back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok()) << json;
  EXPECT_EQ(back.SerializeAsString(), s.SerializeAsString());

  v1::RoundRecord r;
  r.set_round(3);
  r.set_params_digest(0xfedcba9876543210ull);  // beyond a double's integers: kept exactly
  v1::RoundRecord r_back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(RoundRecordJson(r), &r_back).ok());
  EXPECT_EQ(r_back.params_digest(), 0xfedcba9876543210ull);
  EXPECT_EQ(WorkerJson(*w), ToJsonLine(*w));
}

}  // namespace
}  // namespace qsr
