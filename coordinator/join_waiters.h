// JoinWaiters: the Join calls that wait for their worker's generation to form, by worker id.
//
// Contract: at most one waiting call per worker id; a newer call of the same worker supersedes
// the older one, which is answered TIMEOUT ("superseded by a newer Join"). Every call added is
// answered exactly once: by Answer (its generation formed, or its worker left), AnswerAll (the
// run ended or is stopping) or Expire (its poll deadline passed: the worker asks again). Who is
// admitted, and when, is Membership's and the RunController's decision.
//
// Thread-compatible: the RunController calls it under its lock. Callbacks never run here: they
// are appended to `completions`, for the caller to run outside its lock.
//
// Lifecycle: lives as long as the run.
#ifndef QSR_COORDINATOR_JOIN_WAITERS_H_
#define QSR_COORDINATOR_JOIN_WAITERS_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

class JoinWaiters {
 public:
  using Callback = std::function<void(const v1::JoinReply&)>;
  using Completion = std::function<void()>;

  void Add(const std::string& worker_id, absl::Time poll_deadline, Callback done,
           std::vector<Completion>* completions);
  // Answers the worker's waiting call with `reply`; false when none waits.
  bool Answer(const std::string& worker_id, const v1::JoinReply& reply,
              std::vector<Completion>* completions);
  void AnswerAll(const v1::JoinReply& reply, std::vector<Completion>* completions);
  // Answers every call whose poll deadline is at or before `now` with `reply`; returns their
  // worker ids.
  std::vector<std::string> Expire(absl::Time now, const v1::JoinReply& reply,
                                  std::vector<Completion>* completions);

  bool Waiting(const std::string& worker_id) const { return waiters_.count(worker_id) > 0; }
  bool empty() const { return waiters_.empty(); }
  std::vector<std::string> worker_ids() const;

 private:
  struct Waiter {
    absl::Time poll_deadline;
    Callback done;
  };
  std::map<std::string, Waiter> waiters_;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_JOIN_WAITERS_H_
