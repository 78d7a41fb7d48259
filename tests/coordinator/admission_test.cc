// Admission on its own: waiting Join calls, superseded and expired polls, refusals, and the
// joiner bookkeeping in Membership that goes with them.
#include "coordinator/admission.h"

#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace qsr {
namespace {

class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : membership_(Options()), admission_(&membership_, "run-1") {}

  static Membership::Options Options() {
    Membership::Options o;
    o.initial_size = 2;
    o.min_workers = 1;
    o.max_workers = 2;
    return o;
  }
  // Joins `worker_id`; the replies it gets land in got_[worker_id].
  bool Join(const std::string& worker_id, absl::Time poll_deadline) {
    v1::JoinRequest r;
    r.set_worker_id(worker_id);
    return admission_.Join(
        r, now_, poll_deadline, 2, [](int rank) { return Reply(rank); },
        [this, worker_id](const v1::JoinReply& reply) { got_[worker_id].push_back(reply); },
        &completions_);
  }
  static v1::JoinReply Reply(int rank) {
    v1::JoinReply reply;
    reply.set_rank(rank);
    reply.mutable_outcome()->set_code(v1::Outcome::OK);
    return reply;
  }
  void RunCompletions() {
    for (auto& c : completions_) c();
    completions_.clear();
  }

  Membership membership_;
  Admission admission_;
  std::vector<Admission::Completion> completions_;
  std::map<std::string, std::vector<v1::JoinReply>> got_;
  const absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

TEST_F(AdmissionTest, JoinersWaitUntilTheirGenerationFormsAndAreAnsweredOnce) {
  EXPECT_FALSE(Join("a", now_ + absl::Seconds(30)));
  EXPECT_FALSE(Join("b", now_ + absl::Seconds(30)));
  EXPECT_TRUE(admission_.Waiting("a"));
  RunCompletions();
  EXPECT_TRUE(got_.empty());
  ASSERT_TRUE(membership_.TryForm(now_));
  admission_.AnswerMembers([](int rank) { return Reply(rank); }, &completions_);
  RunCompletions();
  ASSERT_EQ(got_["a"].size(), 1u);
  ASSERT_EQ(got_["b"].size(), 1u);
  EXPECT_EQ(got_["a"][0].rank() + got_["b"][0].rank(), 1);  // ranks 0 and 1
  EXPECT_TRUE(admission_.empty());
  // A member's retried Join is answered at once with its rank.
  EXPECT_TRUE(Join("a", now_ + absl::Seconds(30)));
  RunCompletions();
  ASSERT_EQ(got_["a"].size(), 2u);
  EXPECT_EQ(got_["a"][1].rank(), got_["a"][0].rank());
  // A third worker finds the run full.
  EXPECT_TRUE(Join("c", now_ + absl::Seconds(30)));
  RunCompletions();
  ASSERT_EQ(got_["c"].size(), 1u);
  EXPECT_EQ(got_["c"][0].outcome().code(), v1::Outcome::REJECTED);
  EXPECT_EQ(got_["c"][0].run_id(), "run-1");
  EXPECT_NE(got_["c"][0].outcome().message().find("maximum of 2 workers"), std::string::npos);
}

TEST_F(AdmissionTest, ANewerJoinOfTheSameWorkerSupersedesTheOlder) {
  EXPECT_FALSE(Join("a", now_ + absl::Seconds(30)));
  EXPECT_FALSE(Join("a", now_ + absl::Seconds(30)));
  RunCompletions();
  ASSERT_EQ(got_["a"].size(), 1u);
  EXPECT_EQ(got_["a"][0].outcome().code(), v1::Outcome::TIMEOUT);
  EXPECT_TRUE(admission_.Waiting("a"));
}

TEST_F(AdmissionTest, ExpiredPollsAreAnsweredTimeoutAndSilentJoinersForgotten) {
  EXPECT_FALSE(Join("a", now_ + absl::Seconds(1)));
  EXPECT_FALSE(Join("b", now_ + absl::Seconds(60)));
  admission_.Expire(now_ + absl::Seconds(2), &completions_);
  RunCompletions();
  ASSERT_EQ(got_["a"].size(), 1u);
  EXPECT_EQ(got_["a"][0].outcome().code(), v1::Outcome::TIMEOUT);
  EXPECT_NE(got_["a"][0].outcome().message().find("generation 1 has not formed yet"),
            std::string::npos);
  EXPECT_TRUE(got_["b"].empty());
  EXPECT_EQ(membership_.joiners().size(), 2u);  // a asks again: still a joiner
  // a never asks again: forgotten after the grace period; b still waits.
  admission_.Expire(now_ + absl::Seconds(2) + Admission::kJoinerGrace + absl::Seconds(1),
                    &completions_);
  RunCompletions();
  ASSERT_EQ(membership_.joiners().size(), 1u);
  EXPECT_EQ(membership_.joiners()[0].worker_id, "b");
}

TEST_F(AdmissionTest, LeaveAndRefuseAllAnswerEveryWaitingCall) {
  EXPECT_FALSE(Join("a", now_ + absl::Seconds(30)));
  admission_.Leave("a", &completions_);
  RunCompletions();
  ASSERT_EQ(got_["a"].size(), 1u);
  EXPECT_EQ(got_["a"][0].outcome().code(), v1::Outcome::REJECTED);
  EXPECT_TRUE(membership_.joiners().empty());

  EXPECT_FALSE(Join("b", now_ + absl::Seconds(30)));
  admission_.RefuseAll(v1::Outcome::RUN_FAILED, "run failed: x", false, &completions_);
  RunCompletions();
  ASSERT_EQ(got_["b"].size(), 1u);
  EXPECT_EQ(got_["b"][0].outcome().code(), v1::Outcome::RUN_FAILED);
  EXPECT_EQ(got_["b"][0].run_id(), "run-1");
  EXPECT_EQ(membership_.joiners().size(), 1u);  // kept: a failed run still lists it
  EXPECT_FALSE(Join("b", now_ + absl::Seconds(30)));
  admission_.RefuseAll(v1::Outcome::RUN_FINISHED, "run is stopping", true, &completions_);
  RunCompletions();
  EXPECT_EQ(got_["b"].size(), 2u);
  EXPECT_TRUE(membership_.joiners().empty());
  EXPECT_TRUE(admission_.empty());
}

}  // namespace
}  // namespace qsr
