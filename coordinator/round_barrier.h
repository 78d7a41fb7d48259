// RoundBarrier: which ranks of the current generation wait for which round, and answering them.
//
// Contract: the members of a generation ask for the same next round. The first arrival opens the
// barrier for that round and starts its deadline (the straggler timeout); an arrival for another
// round is refused (FAILED_PRECONDITION) and changes nothing. Each rank occupies one slot, so an
// arrival costs O(1); a call that brings co-members (a host agent's) occupies the slot of every
// rank it carries. A rank that arrives again while it waits (its call timed out on its side, or
// its connection dropped) supersedes its older call: that call is answered TIMEOUT and every
// rank it carried stops counting (they ask again). Release answers every waiting call exactly
// once, with one reply shared by all, and closes the barrier. When to release, and with what, is
// the RunController's decision.
//
// Thread-compatible: the RunController calls it under its lock. Callbacks never run here: they
// are appended to `completions`, for the caller to run outside its lock.
//
// Lifecycle: closed; Arrive opens it for a round; Release (or Close, when nobody waits) closes
// it. One barrier serves every round of the run.
#ifndef QSR_COORDINATOR_ROUND_BARRIER_H_
#define QSR_COORDINATOR_ROUND_BARRIER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

class RoundBarrier {
 public:
  using Callback = std::function<void(const v1::NextRoundsReply&)>;
  using Completion = std::function<void()>;

  bool open() const { return round_ >= 0; }
  // The round the waiting ranks ask for; -1 while closed.
  int64_t round() const { return round_; }
  // Ranks waiting (a call with co-members counts each rank it carries).
  int waiting() const { return waiting_; }
  bool Waiting(int rank) const;
  // Open, and its deadline has passed: whoever has not arrived is a straggler.
  bool Overdue(absl::Time now) const { return open() && now >= deadline_; }

  // `ranks` (the caller first, then its co-members) arrive asking for `round`. REQUIRES: the
  // ranks are distinct and each in [0, world_size) (the membership and request validator check
  // that before).
  absl::Status Arrive(int64_t round, const std::vector<int>& ranks, int world_size, absl::Time now,
                      absl::Duration timeout, Callback done, std::vector<Completion>* completions);
  // Answers every waiting call with `reply` and closes the barrier.
  void Release(v1::NextRoundsReply reply, std::vector<Completion>* completions);
  // Closes the barrier without answering anyone: for when the generation that waited was already
  // released (it ended) and the plan moves.
  void Close() { round_ = -1; }

 private:
  // One waiting call and the ranks it brought.
  struct Call {
    Callback done;
    std::vector<int> ranks;
  };

  int64_t round_ = -1;
  absl::Time deadline_;
  // The waiting calls by rank; null: that rank has not arrived.
  std::vector<std::shared_ptr<Call>> slots_;
  int waiting_ = 0;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_ROUND_BARRIER_H_
