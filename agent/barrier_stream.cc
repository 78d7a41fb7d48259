#include "agent/barrier_stream.h"

#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/connection_security.h"

namespace qsr {

// One stream. gRPC holds a raw pointer to it until OnDone; `self_` keeps it alive until then, and
// the owner's shared_ptr copies keep it alive while the owner calls into it outside its lock
// (gRPC may run reactions inline at the end of StartWrite or TryCancel, so no lock is held
// across those).
class BarrierStream::Reactor final
    : public grpc::ClientBidiReactor<v1::NextRoundsCall, v1::NextRoundsAnswer> {
 public:
  Reactor(BarrierStream* owner, v1::Coordinator::Stub* stub, const std::string& token)
      : owner_(owner) {
    AttachToken(token, &ctx_);
    stub->async()->NextRoundsStream(&ctx_, this);
  }

  // Once, by the creator, with the shared_ptr that owns it.
  void Start(std::shared_ptr<Reactor> self) {
    self_ = std::move(self);
    StartRead(&answer_);
    AddHold();  // writes come from outside reactions; removed when reading ends
    StartCall();
  }

  // False when the stream has ended (nothing was sent). Each write holds the stream open until
  // it completes, so no write ever starts on a finished stream.
  bool Write(v1::NextRoundsCall call) {
    {
      absl::MutexLock lock(&mu_);
      if (reading_ended_) return false;
      AddHold();
      if (writing_) {
        queue_.push_back(std::move(call));
        return true;
      }
      writing_ = true;
      write_ = std::move(call);
    }
    StartWrite(&write_);
    return true;
  }

  void Close() { ctx_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    size_t dropped = 0;
    bool more = false;
    {
      absl::MutexLock lock(&mu_);
      if (!ok) {
        // The stream is ending: OnReadDone and OnDone follow; queued writes will not go.
        dropped = queue_.size();
        queue_.clear();
        writing_ = false;
      } else if (queue_.empty()) {
        writing_ = false;
      } else {
        write_ = std::move(queue_.front());
        queue_.pop_front();
        more = true;
      }
    }
    if (more) StartWrite(&write_);
    for (size_t i = 0; i < dropped; ++i) RemoveHold();
    RemoveHold();  // this write's; last, as it may let OnDone come
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        reading_ended_ = true;
      }
      RemoveHold();  // the stream is over: let OnDone come once the writes have completed
      return;
    }
    owner_->Answered(answer_);
    StartRead(&answer_);
  }

  void OnDone(const grpc::Status& status) override {
    owner_->Ended(this, status);
    self_.reset();  // may delete this: last statement
  }

 private:
  BarrierStream* const owner_;
  grpc::ClientContext ctx_;
  v1::NextRoundsAnswer answer_;  // the read in progress
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reading_ended_ ABSL_GUARDED_BY(mu_) = false;
  v1::NextRoundsCall write_;  // the write in progress
  std::deque<v1::NextRoundsCall> queue_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Reactor> self_;
};

BarrierStream::BarrierStream(v1::Coordinator::Stub* stub, std::string token)
    : stub_(stub), token_(std::move(token)) {}

BarrierStream::~BarrierStream() {
  Shutdown();
  AwaitIdle(absl::Now() + absl::Seconds(10));
}

void BarrierStream::Call(const v1::NextRoundsRequest& request, absl::Time deadline, Done done) {
  std::shared_ptr<Reactor> stream;
  bool opened = false;
  v1::NextRoundsCall call;
  {
    absl::MutexLock lock(&mu_);
    if (!shut_down_) {
      if (current_ == nullptr) {
        current_ = std::make_shared<Reactor>(this, stub_, token_);
        ++live_streams_;
        ++opened_;
        opened = true;
      }
      stream = current_;
      call.set_id(next_id_++);
      pending_[call.id()] = Pending{deadline, std::move(done), stream.get()};
    }
  }
  if (stream == nullptr) {
    done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "qsr-agent is shutting down"),
         v1::NextRoundsReply());
    return;
  }
  *call.mutable_request() = request;
  const uint64_t id = call.id();
  if (opened) stream->Start(stream);
  if (stream->Write(std::move(call))) return;
  // The stream ended before the call could go: answer it here unless Ended already did.
  Done orphan;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(id);
    if (it != pending_.end()) {
      orphan = std::move(it->second.done);
      pending_.erase(it);
    }
    if (current_ == stream) current_.reset();  // the next call opens a new stream
  }
  if (orphan) {
    orphan(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "the barrier stream to the coordinator ended"),
        v1::NextRoundsReply());
  }
}

void BarrierStream::Answered(const v1::NextRoundsAnswer& answer) {
  Done done;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(answer.id());
    if (it == pending_.end()) return;  // expired meanwhile
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  done(grpc::Status(static_cast<grpc::StatusCode>(answer.status_code()), answer.status_message()),
       answer.reply());
}

void BarrierStream::Ended(Reactor* reactor, const grpc::Status& status) {
  std::vector<Done> orphans;
  {
    absl::MutexLock lock(&mu_);
    if (current_.get() == reactor) current_.reset();
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.on == reactor) {
        orphans.push_back(std::move(it->second.done));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    --live_streams_;
  }
  const grpc::Status unavailable(
      grpc::StatusCode::UNAVAILABLE,
      absl::StrCat("the barrier stream to the coordinator ended: ", status.error_message()));
  for (Done& d : orphans) d(unavailable, v1::NextRoundsReply());
}

absl::Time BarrierStream::Expire(absl::Time now) {
  std::vector<Done> expired;
  absl::Time next = absl::InfiniteFuture();
  {
    absl::MutexLock lock(&mu_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second.done));
        it = pending_.erase(it);
      } else {
        next = std::min(next, it->second.deadline);
        ++it;
      }
    }
  }
  const grpc::Status late(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "the coordinator did not answer the barrier call by its deadline");
  for (Done& d : expired) d(late, v1::NextRoundsReply());
  return next;
}

void BarrierStream::Shutdown() {
  std::shared_ptr<Reactor> stream;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    stream = current_;
  }
  if (stream != nullptr) stream->Close();  // its OnDone answers what was pending on it
}

bool BarrierStream::AwaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_streams_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

int64_t BarrierStream::streams_opened() const {
  absl::MutexLock lock(&mu_);
  return opened_;
}

}  // namespace qsr
