#include "coordinator/request_validator.h"

#include <cmath>
#include <limits>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

// INVALID_ARGUMENT whose message names `field`.
void ExpectRejected(const absl::Status& s, const std::string& field) {
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), field)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "allowed")) << s;
}

v1::JoinRequest GoodJoin() {
  v1::JoinRequest r;
  r.set_worker_id("host:1");
  r.set_host("10.0.0.1");
  r.set_device("cpu");
  r.set_next_round(0);
  return r;
}

TEST(RequestValidatorTest, Join) {
  EXPECT_TRUE(ValidateJoin(GoodJoin()).ok());
  v1::JoinRequest r = GoodJoin();
  r.clear_worker_id();
  ExpectRejected(ValidateJoin(r), "worker_id");
  r = GoodJoin();
  r.set_worker_id(std::string(RequestLimits::kMaxWorkerIdBytes + 1, 'w'));
  ExpectRejected(ValidateJoin(r), "worker_id");
  r = GoodJoin();
  r.set_host(std::string(RequestLimits::kMaxHostBytes + 1, 'h'));
  ExpectRejected(ValidateJoin(r), "host");
  r = GoodJoin();
  r.set_device(std::string(RequestLimits::kMaxDeviceBytes + 1, 'd'));
  ExpectRejected(ValidateJoin(r), "device");
  r = GoodJoin();
  r.set_next_round(-1);
  ExpectRejected(ValidateJoin(r), "next_round");
}

TEST(RequestValidatorTest, WorkerIdentity) {
  v1::NextRoundsRequest r;
  r.set_worker_id("w");
  r.set_rank(3);
  r.set_generation(1);
  r.set_next_round(0);
  EXPECT_TRUE(ValidateNextRounds(r).ok());
  r.set_rank(-1);
  ExpectRejected(ValidateNextRounds(r), "rank");
  r.set_rank(RequestLimits::kMaxRank + 1);
  ExpectRejected(ValidateNextRounds(r), "rank");
  r.set_rank(0);
  r.set_generation(-1);
  ExpectRejected(ValidateNextRounds(r), "generation");
  r.set_generation(1);
  r.set_next_round(-1);
  ExpectRejected(ValidateNextRounds(r), "next_round");

  r.set_next_round(0);
  v1::CoMember* co = r.add_co_members();
  co->set_worker_id("w4");
  co->set_rank(4);
  EXPECT_TRUE(ValidateNextRounds(r).ok());
  co->set_rank(0);  // the caller's own rank
  ExpectRejected(ValidateNextRounds(r), "twice");
  co->set_rank(-2);
  ExpectRejected(ValidateNextRounds(r), "co_members: rank");
  co->set_rank(4);
  co->set_worker_id("");
  ExpectRejected(ValidateNextRounds(r), "co_members: worker_id");
  r.clear_co_members();
  for (int i = 0; i <= RequestLimits::kMaxCoMembers; ++i) {
    v1::CoMember* m = r.add_co_members();
    m->set_worker_id("m");
    m->set_rank(i + 1);
  }
  ExpectRejected(ValidateNextRounds(r), "co_members has");
  r.clear_co_members();

  v1::HeartbeatRequest h;
  h.set_worker_id("w");
  h.set_generation(2);
  EXPECT_TRUE(ValidateHeartbeat(h).ok());
  v1::CoMember* beat_co = h.add_co_members();
  beat_co->set_worker_id("w1");
  beat_co->set_rank(1);
  EXPECT_TRUE(ValidateHeartbeat(h).ok());
  beat_co->set_rank(0);
  ExpectRejected(ValidateHeartbeat(h), "twice");
  h.clear_co_members();
  h.set_step(-4);
  ExpectRejected(ValidateHeartbeat(h), "step");

  v1::LeaveRequest l;
  l.set_worker_id("w");
  l.set_error(std::string(RequestLimits::kMaxErrorBytes, 'e'));
  EXPECT_TRUE(ValidateLeave(l).ok());
  l.set_error(std::string(RequestLimits::kMaxErrorBytes + 1, 'e'));
  ExpectRejected(ValidateLeave(l), "error");
}

TEST(RequestValidatorTest, Report) {
  v1::ReportRequest r;
  r.set_worker_id("w");
  r.set_generation(1);
  v1::RoundReport* round = r.add_rounds();
  round->set_round(0);
  round->set_h(4);
  round->set_seconds(0.5);
  round->set_train_loss(std::nan(""));  // a diverged run may report it
  r.add_evals()->set_step(4);
  v1::CheckpointReport* ckpt = r.add_checkpoints();
  ckpt->set_manifest("/ckpt/MANIFEST.json");
  EXPECT_TRUE(ValidateReport(r).ok());

  round->set_h(0);
  ExpectRejected(ValidateReport(r), "rounds.h");
  round->set_h(4);
  round->set_samples(-1);
  ExpectRejected(ValidateReport(r), "rounds.samples");
  round->set_samples(1);
  round->set_seconds(std::numeric_limits<double>::infinity());
  ExpectRejected(ValidateReport(r), "rounds.seconds");
  round->set_seconds(1);
  round->set_lr(std::nan(""));  // a self-planned round's lr is logged: it must be a number
  ExpectRejected(ValidateReport(r), "rounds.lr");
  round->set_lr(-0.1);
  ExpectRejected(ValidateReport(r), "rounds.lr");
  round->set_lr(0.1);
  r.mutable_evals(0)->set_epoch(-1);
  ExpectRejected(ValidateReport(r), "evals.epoch");
  r.mutable_evals(0)->set_epoch(1);
  ckpt->clear_manifest();
  ExpectRejected(ValidateReport(r), "checkpoints.manifest");
  ckpt->set_manifest("m");
  for (int i = 0; i < RequestLimits::kMaxRoundReports; ++i) *r.add_rounds() = *round;
  ExpectRejected(ValidateReport(r), "rounds");
}

TEST(RequestValidatorTest, OperatorAndRendezvousCalls) {
  v1::KvGetRequest get;
  get.set_timeout_ms(RequestLimits::kMaxKvWaitMs);
  EXPECT_TRUE(ValidateKvGet(get).ok());
  get.set_timeout_ms(-1);
  ExpectRejected(ValidateKvGet(get), "timeout_ms");
  get.set_timeout_ms(RequestLimits::kMaxKvWaitMs + 1);
  ExpectRejected(ValidateKvGet(get), "timeout_ms");

  v1::ListRoundsRequest list;
  EXPECT_TRUE(ValidateListRounds(list).ok());
  list.set_limit(-1);
  ExpectRejected(ValidateListRounds(list), "limit");
  list.set_limit(0);
  list.set_from_round(-3);
  ExpectRejected(ValidateListRounds(list), "from_round");

  v1::StopRequest stop;
  stop.set_reason("maintenance");
  EXPECT_TRUE(ValidateStop(stop).ok());
  stop.set_reason(std::string(RequestLimits::kMaxStopReasonBytes + 1, 'r'));
  ExpectRejected(ValidateStop(stop), "reason");
}

}  // namespace
}  // namespace qsr
