#include "coordinator/admission.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/outcome.h"
#include "glog/logging.h"

namespace qsr {

bool Admission::Join(const v1::JoinRequest& request, absl::Time now, absl::Time poll_deadline,
                     int64_t max_workers, const MemberReply& member_reply, Callback done,
                     std::vector<Completion>* completions) {
  switch (membership_->Join(request.worker_id(), request.host(), request.device(),
                            request.next_round(), request.failed_generation(), now,
                            request.incarnation())) {
    case Membership::JoinResult::kFull: {
      auto refused = WithOutcome<v1::JoinReply>(
          v1::Outcome::REJECTED,
          absl::StrCat("run is full: it has its maximum of ", max_workers, " workers"));
      refused.set_run_id(run_id_);
      completions->push_back([cb = std::move(done), refused] { cb(refused); });
      return true;
    }
    case Membership::JoinResult::kAlreadyMember:
      for (const Membership::Member& m : membership_->members()) {
        if (m.worker_id != request.worker_id()) continue;
        completions->push_back([cb = done, reply = member_reply(m.rank)] { cb(reply); });
      }
      return true;
    case Membership::JoinResult::kJoining:
      break;
  }
  Answer(request.worker_id(),
         WithOutcome<v1::JoinReply>(v1::Outcome::TIMEOUT, "superseded by a newer Join"),
         completions);
  waiters_[request.worker_id()] = Waiter{poll_deadline, std::move(done)};
  LOG(INFO) << "worker " << request.worker_id() << " (" << request.host() << ", "
            << request.device() << ", ready for round " << request.next_round() << ") asks to join";
  return false;
}

void Admission::AnswerMembers(const MemberReply& member_reply,
                              std::vector<Completion>* completions) {
  for (const Membership::Member& m : membership_->members()) {
    if (Waiting(m.worker_id)) Answer(m.worker_id, member_reply(m.rank), completions);
  }
}

void Admission::Leave(const std::string& worker_id, std::vector<Completion>* completions) {
  membership_->DropJoiner(worker_id);
  Answer(worker_id,
         WithOutcome<v1::JoinReply>(v1::Outcome::REJECTED, "worker " + worker_id + " left the run"),
         completions);
}

void Admission::RefuseAll(v1::Outcome::Code code, const std::string& message, bool forget_joiners,
                          std::vector<Completion>* completions) {
  auto reply = WithOutcome<v1::JoinReply>(code, message);
  reply.set_run_id(run_id_);
  for (auto& [id, w] : waiters_) {
    if (forget_joiners) membership_->DropJoiner(id);
    completions->push_back([cb = std::move(w.done), reply] { cb(reply); });
  }
  waiters_.clear();
}

void Admission::Expire(absl::Time now, std::vector<Completion>* completions) {
  auto timeout = WithOutcome<v1::JoinReply>(
      v1::Outcome::TIMEOUT,
      absl::StrCat("generation ", membership_->generation() + 1, " has not formed yet (",
                   membership_->joiners().size(), " workers waiting)"));
  timeout.set_run_id(run_id_);
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (now < it->second.poll_deadline) {
      ++it;
      continue;
    }
    completions->push_back([cb = std::move(it->second.done), timeout] { cb(timeout); });
    membership_->TouchJoiner(it->first, now);
    it = waiters_.erase(it);
  }
  std::vector<std::string> stale;
  for (const Membership::Member& j : membership_->joiners()) {
    if (!Waiting(j.worker_id) && now - j.last_seen > kJoinerGrace) stale.push_back(j.worker_id);
  }
  for (const std::string& id : stale) membership_->DropJoiner(id);
}

bool Admission::Answer(const std::string& worker_id, const v1::JoinReply& reply,
                       std::vector<Completion>* completions) {
  auto it = waiters_.find(worker_id);
  if (it == waiters_.end()) return false;
  completions->push_back([cb = std::move(it->second.done), reply] { cb(reply); });
  waiters_.erase(it);
  return true;
}

}  // namespace qsr
