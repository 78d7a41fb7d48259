#include "client/report_sender.h"

#include <utility>

#include "absl/random/random.h"
#include "common/backoff.h"
#include "glog/logging.h"

namespace qsr {
namespace {

// Reports kept while the coordinator is unreachable; older ones are dropped beyond this.
constexpr int kMaxQueuedRounds = 100000;

}  // namespace

ReportSender::ReportSender(CoordinatorClient* client, v1::ReportRequest identity,
                           absl::Duration interval)
    : client_(client), identity_(std::move(identity)), interval_(interval) {
  thread_ = std::thread([this] { Loop(); });
}

ReportSender::~ReportSender() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void ReportSender::AddRound(v1::RoundReport report) {
  absl::MutexLock lock(&mu_);
  if (queued_.rounds_size() >= kMaxQueuedRounds) return;
  *queued_.add_rounds() = std::move(report);
}

void ReportSender::AddEval(v1::EvalReport report) {
  absl::MutexLock lock(&mu_);
  *queued_.add_evals() = std::move(report);
}

void ReportSender::AddCheckpoint(v1::CheckpointReport report) {
  absl::MutexLock lock(&mu_);
  *queued_.add_checkpoints() = std::move(report);
}

absl::Status ReportSender::SendOnce() {
  absl::MutexLock send_lock(&send_mu_);
  v1::ReportRequest request;
  {
    absl::MutexLock lock(&mu_);
    if (queued_.rounds_size() == 0 && queued_.evals_size() == 0 &&
        queued_.checkpoints_size() == 0) {
      return absl::OkStatus();
    }
    request.Swap(&queued_);
  }
  request.set_worker_id(identity_.worker_id());
  request.set_rank(identity_.rank());
  request.set_generation(identity_.generation());
  absl::StatusOr<v1::ReportReply> reply = client_->Report(request, absl::Now() + absl::Seconds(10));
  if (reply.ok()) return absl::OkStatus();
  if (absl::IsUnavailable(reply.status()) || absl::IsDeadlineExceeded(reply.status())) {
    // Put the reports back in front of anything queued since, to keep rounds in order.
    absl::MutexLock lock(&mu_);
    request.MergeFrom(queued_);
    request.Swap(&queued_);
  }
  LOG(WARNING) << "report not delivered: " << reply.status();
  return reply.status();
}

void ReportSender::Loop() {
  absl::BitGen random;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopped),
                           BackoffDelay({interval_, interval_, kPeriodicJitter}, 0, random));
      if (stop_) return;
    }
    absl::Status s = SendOnce();
    absl::MutexLock lock(&mu_);
    last_error_ = s;
  }
}

absl::Status ReportSender::Flush(absl::Time deadline) {
  absl::Status s;
  while (absl::Now() < deadline) {
    s = SendOnce();
    absl::MutexLock lock(&mu_);
    if (s.ok() && queued_.rounds_size() == 0 && queued_.evals_size() == 0) return s;
    if (!s.ok() && !absl::IsUnavailable(s) && !absl::IsDeadlineExceeded(s)) return s;
    auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Milliseconds(200));
  }
  return s.ok() ? absl::DeadlineExceededError("reports not flushed by the deadline") : s;
}

}  // namespace qsr
