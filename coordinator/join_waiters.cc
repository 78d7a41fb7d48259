#include "coordinator/join_waiters.h"

#include <utility>

#include "coordinator/outcome.h"

namespace qsr {

void JoinWaiters::Add(const std::string& worker_id, absl::Time poll_deadline, Callback done,
                      std::vector<Completion>* completions) {
  v1::JoinReply superseded;
  *superseded.mutable_outcome() = MakeOutcome(v1::Outcome::TIMEOUT, "superseded by a newer Join");
  Answer(worker_id, superseded, completions);
  waiters_[worker_id] = Waiter{poll_deadline, std::move(done)};
}

bool JoinWaiters::Answer(const std::string& worker_id, const v1::JoinReply& reply,
                         std::vector<Completion>* completions) {
  auto it = waiters_.find(worker_id);
  if (it == waiters_.end()) return false;
  completions->push_back([cb = std::move(it->second.done), reply] { cb(reply); });
  waiters_.erase(it);
  return true;
}

void JoinWaiters::AnswerAll(const v1::JoinReply& reply, std::vector<Completion>* completions) {
  for (auto& [id, w] : waiters_) {
    completions->push_back([cb = std::move(w.done), reply] { cb(reply); });
  }
  waiters_.clear();
}

std::vector<std::string> JoinWaiters::Expire(absl::Time now, const v1::JoinReply& reply,
                                             std::vector<Completion>* completions) {
  std::vector<std::string> expired;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (now < it->second.poll_deadline) {
      ++it;
      continue;
    }
    completions->push_back([cb = std::move(it->second.done), reply] { cb(reply); });
    expired.push_back(it->first);
    it = waiters_.erase(it);
  }
  return expired;
}

std::vector<std::string> JoinWaiters::worker_ids() const {
  std::vector<std::string> ids;
  for (const auto& [id, w] : waiters_) ids.push_back(id);
  return ids;
}

}  // namespace qsr
