#include "coordinator/next_rounds_stream.h"

#include <utility>

#include "coordinator/request_validator.h"

namespace qsr {

NextRoundsStream::NextRoundsStream(RunController* controller, const absl::Status& refusal)
    : controller_(controller), shared_(std::make_shared<Shared>()) {
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->stream = this;
    if (!refusal.ok()) {
      shared_->finishing = true;
      shared_->reading = false;
    }
  }
  // No lock is held across a call into gRPC: it may run this stream's reactions inline.
  if (!refusal.ok()) {
    Finish(grpc::Status(static_cast<grpc::StatusCode>(refusal.code()),
                        std::string(refusal.message())));
    return;
  }
  StartRead(&call_);
}

void NextRoundsStream::OnReadDone(bool ok) {
  if (!ok) {
    // The agent closed its side (or the stream broke): answer what is being written, then
    // finish. Calls still waiting at the barrier are dropped; the agent answers them itself.
    Action action;
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reading = false;
      shared_->queue.clear();
      action = NextAction();
    }
    Act(action);
    return;
  }
  const uint64_t id = call_.id();
  v1::NextRoundsRequest request = std::move(*call_.mutable_request());
  // The next read may start now: call_ is no longer used.
  StartRead(&call_);
  auto fail = [&](const absl::Status& s) {
    v1::NextRoundsAnswer answer;
    answer.set_id(id);
    answer.set_status_code(static_cast<int>(s.code()));
    answer.set_status_message(std::string(s.message()));
    Send(shared_, std::move(answer));
  };
  if (absl::Status s = ValidateNextRounds(request); !s.ok()) return fail(s);
  std::shared_ptr<Shared> shared = shared_;
  absl::Status s =
      controller_->NextRounds(request, absl::Now(), [shared, id](const v1::NextRoundsReply& reply) {
        v1::NextRoundsAnswer answer;
        answer.set_id(id);
        *answer.mutable_reply() = reply;
        Send(shared, std::move(answer));
      });
  if (!s.ok()) fail(s);
}

void NextRoundsStream::Send(const std::shared_ptr<Shared>& shared, v1::NextRoundsAnswer answer) {
  NextRoundsStream* stream;
  Action action;
  {
    absl::MutexLock lock(&shared->mu);
    if (shared->stream == nullptr || shared->finishing) return;  // the stream is gone
    shared->queue.push_back(std::move(answer));
    stream = shared->stream;
    action = stream->NextAction();
  }
  // `stream` stays alive: with a write due and none started, nothing can finish it.
  stream->Act(action);
}

NextRoundsStream::Action NextRoundsStream::NextAction() {
  if (shared_->writing || shared_->finishing) return Action::kNone;
  if (!shared_->queue.empty()) {
    answer_ = std::move(shared_->queue.front());
    shared_->queue.pop_front();
    shared_->writing = true;
    return Action::kWrite;
  }
  if (!shared_->reading) {
    shared_->finishing = true;
    return Action::kFinish;
  }
  return Action::kNone;
}

void NextRoundsStream::Act(Action action) {
  switch (action) {
    case Action::kNone:
      return;
    case Action::kWrite:
      StartWrite(&answer_);
      return;
    case Action::kFinish:
      Finish(grpc::Status::OK);
      return;
    case Action::kFinishBroken:
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
      return;
  }
}

void NextRoundsStream::OnWriteDone(bool ok) {
  Action action;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->writing = false;
    if (!ok) {
      // The stream broke: nothing more can be written.
      shared_->queue.clear();
      shared_->finishing = true;
      action = Action::kFinishBroken;
    } else {
      action = NextAction();
    }
  }
  Act(action);
}

void NextRoundsStream::OnDone() {
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->stream = nullptr;
  }
  delete this;
}

}  // namespace qsr
