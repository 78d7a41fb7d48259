// Admission: the Join calls of workers that wait for their generation to form, and the joiner
// bookkeeping in Membership that goes with them.
//
// Contract: at most one waiting Join per worker id; a newer call of the same worker supersedes
// the older one, which is answered TIMEOUT ("superseded by a newer Join"). Every Join handed to
// Join() is answered exactly once: at once (a full run, a member's retried Join), when its
// generation forms (AnswerMembers), when its worker leaves (Leave), when the run ends or stops
// (RefuseAll), or when its poll deadline passes (Expire: the worker asks again). When a
// generation forms, and what a run that has ended answers, is the RunController's decision.
//
// Thread-compatible: the RunController calls it under its lock, with the Membership it guards.
// Callbacks never run here: they are appended to `completions`, for the caller to run outside
// its lock.
//
// Lifecycle: lives as long as the run; `membership` must outlive it.
#ifndef QSR_COORDINATOR_ADMISSION_H_
#define QSR_COORDINATOR_ADMISSION_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "coordinator/membership.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

class Admission {
 public:
  using Callback = std::function<void(const v1::JoinReply&)>;
  using Completion = std::function<void()>;
  // The reply that admits a member of the active generation with this rank.
  using MemberReply = std::function<v1::JoinReply(int rank)>;
  // A worker waiting to join that has not asked again for this long is gone.
  static constexpr absl::Duration kJoinerGrace = absl::Seconds(10);

  Admission(Membership* membership, std::string run_id)
      : membership_(membership), run_id_(std::move(run_id)) {}

  // Registers the Join with the membership. Returns true when it was answered at once: REJECTED
  // when the run has its `max_workers`, `member_reply` for a member's retried Join (the reply
  // was lost, or its poll ended just as the group formed). Otherwise the call waits.
  bool Join(const v1::JoinRequest& request, absl::Time now, absl::Time poll_deadline,
            int64_t max_workers, const MemberReply& member_reply, Callback done,
            std::vector<Completion>* completions);
  // Answers the waiting Joins of the active generation's members (it has formed).
  void AnswerMembers(const MemberReply& member_reply, std::vector<Completion>* completions);
  // The worker leaves: it is no joiner any more, and a Join of its that still waits (a
  // restarted process while the old one leaves) is answered REJECTED, never dropped.
  void Leave(const std::string& worker_id, std::vector<Completion>* completions);
  // Answers every waiting Join with `code` and `message`; with `forget_joiners` the membership
  // forgets them too.
  void RefuseAll(v1::Outcome::Code code, const std::string& message, bool forget_joiners,
                 std::vector<Completion>* completions);
  // Answers the Joins whose poll deadline has passed TIMEOUT (the worker asks again, and stays a
  // joiner), and forgets joiners that have not asked for kJoinerGrace.
  void Expire(absl::Time now, std::vector<Completion>* completions);

  bool Waiting(const std::string& worker_id) const { return waiters_.count(worker_id) > 0; }
  bool empty() const { return waiters_.empty(); }

 private:
  struct Waiter {
    absl::Time poll_deadline;
    Callback done;
  };
  // Answers the worker's waiting call with `reply`; false when none waits.
  bool Answer(const std::string& worker_id, const v1::JoinReply& reply,
              std::vector<Completion>* completions);

  Membership* const membership_;
  const std::string run_id_;
  std::map<std::string, Waiter> waiters_;  // by worker id
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_ADMISSION_H_
