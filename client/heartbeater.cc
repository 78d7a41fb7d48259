#include "client/heartbeater.h"

#include <algorithm>

#include "absl/random/random.h"
#include "common/backoff.h"
#include "glog/logging.h"

namespace qsr {

Heartbeater::Heartbeater(CoordinatorClient* client, OnEnded on_ended)
    : client_(client), on_ended_(std::move(on_ended)), thread_([this] { Loop(); }) {}

Heartbeater::~Heartbeater() { Stop(); }

void Heartbeater::SetIdentity(const std::string& worker_id, int rank, int64_t generation,
                              absl::Duration interval) {
  absl::MutexLock lock(&mu_);
  request_.set_worker_id(worker_id);
  request_.set_rank(rank);
  request_.set_generation(generation);
  interval_ = std::max(interval, absl::Milliseconds(10));
  wake_ = true;
}

void Heartbeater::SetStep(int64_t step) {
  absl::MutexLock lock(&mu_);
  request_.set_step(step);
}

void Heartbeater::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Heartbeater::Loop() {
  int failures = 0;
  absl::BitGen random;
  while (true) {
    v1::HeartbeatRequest request;
    absl::Duration interval;
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || wake_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken),
                           BackoffDelay({interval_, interval_, kPeriodicJitter}, 0, random));
      if (stop_) return;
      wake_ = false;
      request = request_;
      interval = interval_;
    }
    if (request.generation() <= 0 || request.generation() == reported_generation_) continue;
    absl::StatusOr<v1::HeartbeatReply> reply =
        client_->Heartbeat(request, absl::Now() + std::max(2 * interval, absl::Seconds(1)));
    if (!reply.ok()) {
      // A restarting coordinator or a blip: the next beat tries again.
      if (failures++ % 10 == 0) LOG(WARNING) << "heartbeat: " << reply.status();
      if (absl::IsFailedPrecondition(reply.status()) || absl::IsInvalidArgument(reply.status())) {
        // The coordinator does not know this generation (or this rank in it): it cannot be
        // continued. Treat it as ended so that the worker joins again.
        v1::Outcome ended;
        ended.set_code(v1::Outcome::GENERATION_ENDED);
        ended.set_message(std::string(reply.status().message()));
        reported_generation_ = request.generation();
        on_ended_(request.generation(), ended);
      }
      continue;
    }
    failures = 0;
    if (reply->outcome().code() != v1::Outcome::OK) {
      reported_generation_ = request.generation();
      on_ended_(request.generation(), reply->outcome());
    }
  }
}

}  // namespace qsr
