#include "tests/integration/fake_workers.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/coordinator_client.h"

namespace qsr::testing {

FakeWorkers::FakeWorkers(std::string address, Options options)
    : address_(std::move(address)), options_(options) {
  results_.assign(options_.workers, absl::OkStatus());
  rounds_.assign(options_.workers, 0);
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, i] {
      absl::Status s = Run(i);
      absl::MutexLock lock(&mu_);
      results_[i] = s;
    });
  }
}

FakeWorkers::~FakeWorkers() {
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

absl::Status FakeWorkers::Wait() {
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  absl::MutexLock lock(&mu_);
  for (const absl::Status& s : results_) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

int64_t FakeWorkers::rounds(int index) const {
  absl::MutexLock lock(&mu_);
  return index < static_cast<int>(rounds_.size()) ? rounds_[index] : 0;
}

absl::Status FakeWorkers::Run(int index) {
  const absl::Time deadline = absl::Now() + options_.timeout;
  auto call_deadline = [&] { return std::min(deadline, absl::Now() + absl::Seconds(30)); };
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> made =
      NewGrpcCoordinatorClient(address_, options_.security);
  if (!made.ok()) return made.status();
  CoordinatorClient* client = made->get();
  v1::JoinRequest join;
  join.set_worker_id(absl::StrCat(options_.id_prefix, index));
  join.set_host(absl::StrCat("127.0.0.", 10 + index));
  join.set_device("fake");
  absl::StatusOr<v1::JoinReply> joined = client->Join(join, call_deadline());
  if (!joined.ok()) return joined.status();
  if (joined->outcome().code() != v1::Outcome::OK) {
    return absl::FailedPreconditionError("join refused: " + joined->outcome().message());
  }
  const int rank = joined->rank();
  auto leave = [&](const std::string& error) {
    v1::LeaveRequest request;
    request.set_worker_id(join.worker_id());
    request.set_rank(rank);
    request.set_generation(joined->generation());
    request.set_error(error);
    return client->Leave(request, call_deadline()).status();
  };

  int64_t next_round = joined->start_round();
  while (absl::Now() < deadline) {
    v1::NextRoundsRequest request;
    request.set_worker_id(join.worker_id());
    request.set_rank(rank);
    request.set_generation(joined->generation());
    request.set_next_round(next_round);
    absl::StatusOr<v1::NextRoundsReply> reply = client->NextRounds(request, call_deadline());
    if (!reply.ok()) return reply.status();
    if (reply->outcome().code() == v1::Outcome::RUN_FINISHED) return leave("");
    if (reply->outcome().code() != v1::Outcome::OK) {
      return absl::AbortedError("NextRounds: " + reply->outcome().message());
    }
    v1::ReportRequest report;
    report.set_worker_id(join.worker_id());
    report.set_rank(rank);
    report.set_generation(joined->generation());
    for (const v1::RoundPlan& plan : reply->rounds()) {
      v1::RoundReport* r = report.add_rounds();
      r->set_round(plan.round());
      r->set_start_step(plan.start_step());
      r->set_h(plan.h());
      r->set_train_loss(2.0 / (1.0 + 0.01 * static_cast<double>(plan.start_step())));
      r->set_samples(64 * plan.h());
      r->set_seconds(0.002 * static_cast<double>(plan.h()));
      r->set_bytes_sent(4096);
      r->set_params_digest(42);
      if (plan.eval_after() && rank == 0) {
        v1::EvalReport* e = report.add_evals();
        const int64_t end = plan.start_step() + plan.h();
        e->set_step(end);
        e->set_test_acc(0.5 + 0.4 * std::min(1.0, static_cast<double>(end) / 1000.0));
        e->set_test_loss(1.0 / (1.0 + 0.01 * static_cast<double>(end)));
        e->set_examples(10000);
      }
      next_round = plan.round() + 1;
    }
    absl::StatusOr<v1::ReportReply> reported = client->Report(report, call_deadline());
    if (!reported.ok()) return reported.status();
    {
      absl::MutexLock lock(&mu_);
      rounds_[index] += reply->rounds_size();
    }
    if (options_.pace > absl::ZeroDuration()) absl::SleepFor(options_.pace);
  }
  (void)leave("fake worker timed out");
  return absl::DeadlineExceededError(absl::StrCat("fake worker ", index, " timed out"));
}

}  // namespace qsr::testing
