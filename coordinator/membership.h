// Membership: who trains in which generation of a run, as a state machine with no RPC in it.
//
// A generation is a fixed group of workers with ranks 0..n-1. It forms from the workers that asked
// to join it ("joiners") and ends on a failure (a missed heartbeat, a worker error, a collective
// that failed, a straggler) or to admit new workers at a round boundary. Then the next one forms:
//
//   FORMING(g+1) --(every surviving member of g has joined again, or the regroup timeout passed
//                   with at least min_workers)--> ACTIVE(g+1) --(failure / admission)--> FORMING
//
// The very first generation forms when `initial_size` workers have joined (no deadline: the run
// waits for its workers). A generation is never formed below `min_workers`; below that the run
// waits `replacement_timeout` for replacements, then gives up (Unformable).
//
// Ranks of a new generation: the joiner holding the most recent state (highest next_round) becomes
// rank 0, since every member starts a generation from rank 0's broadcast model; then survivors in
// their old rank order, then new workers in arrival order.
//
// Not thread-safe: owned by RunController and called under its lock.
#ifndef QSR_COORDINATOR_MEMBERSHIP_H_
#define QSR_COORDINATOR_MEMBERSHIP_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsr {

class Membership {
 public:
  struct Options {
    int initial_size = 1;
    int min_workers = 1;
    int max_workers = 1;
    // A member not heard from for this long has failed.
    absl::Duration heartbeat_timeout = absl::Seconds(10);
    // How long a forming generation waits for the survivors of the previous one.
    absl::Duration regroup_timeout = absl::Seconds(10);
    // How long the run waits below min_workers for replacements before it fails.
    absl::Duration replacement_timeout = absl::Minutes(5);
  };

  struct Member {
    int rank = 0;
    std::string worker_id;
    std::string host;
    std::string device;
    int64_t next_round = 0;   // as the worker said when it joined (0: fresh)
    std::string incarnation;  // of the process that joined
    absl::Time last_seen;
    bool left = false;
    bool failed = false;
    bool active() const { return !left && !failed; }
  };

  enum class JoinResult {
    kJoining,        // registered; answered when its generation forms
    kAlreadyMember,  // a retried Join of a member of the active generation
    kFull,           // max_workers reached
  };

  // Where a caller's generation stands.
  enum class Standing { kCurrent, kEnded };

  explicit Membership(Options options);

  // A worker asks to join the next generation. `failed_generation` > 0 says the caller lost its
  // group in that generation (a collective failed): if it is the active one, it ends here.
  JoinResult Join(const std::string& worker_id, const std::string& host, const std::string& device,
                  int64_t next_round, int64_t failed_generation, absl::Time now,
                  const std::string& incarnation = "");
  // A restarted coordinator: `generation` with these members (worker ids by rank) has ended;
  // they are expected to join the next one. Each is waited for until it joins or the regroup
  // timeout passes, not dropped after a heartbeat timeout of silence as after a regroup: the
  // silence is the coordinator's (its workers were reconnecting to it), not a sign of death.
  void Recover(int64_t generation, const std::vector<std::string>& members, absl::Time now);
  // A joiner's poll ended: it is still there (it will ask again).
  void TouchJoiner(const std::string& worker_id, absl::Time now);
  // Forgets a joiner that stopped asking.
  void DropJoiner(const std::string& worker_id);

  // Checks a member's call: errors for requests that cannot be right (an unknown rank, a rank
  // that belongs to another worker, a future generation), kEnded for a member of an ended
  // generation (it must join again), kCurrent otherwise (and records it as seen).
  absl::StatusOr<Standing> Check(const std::string& worker_id, int rank, int64_t generation,
                                 absl::Time now);
  // Check for a call that brings co-members (a host agent's): each of `co_members` (anything
  // with worker_id() and rank(); distinct ranks, as the request validator ensures) must be a
  // member of the caller's generation, standing as the caller does.
  template <typename CoMembers>
  absl::StatusOr<Standing> CheckWithCoMembers(const std::string& worker_id, int rank,
                                              int64_t generation, const CoMembers& co_members,
                                              absl::Time now) {
    absl::StatusOr<Standing> standing = Check(worker_id, rank, generation, now);
    if (!standing.ok()) return standing;
    for (const auto& m : co_members) {
      absl::StatusOr<Standing> co = Check(m.worker_id(), m.rank(), generation, now);
      if (!co.ok()) return co;
      if (*co != *standing) return NotAlike(m.rank(), rank, generation);
    }
    return standing;
  }

  // Ends the active generation; `failed_ranks` are not expected back. No-op while forming.
  void EndGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                     absl::Time now);
  // Marks a member of the active generation as having left cleanly (end of the run).
  void MarkLeft(int rank);

  // After the run has ended: members silent past the heartbeat timeout are failed (nobody will
  // hear from them again).
  void FailSilent(absl::Time now);
  // Active members whose heartbeats stopped.
  std::vector<int> Expired(absl::Time now) const;

  // Forms the next generation if it is ready (see above); returns true when it did.
  bool TryForm(absl::Time now);
  // Set while forming when the next generation can never form: the message says why.
  std::optional<std::string> Unformable(absl::Time now) const;

  bool forming() const { return forming_; }
  int64_t generation() const { return generation_; }
  const std::vector<Member>& members() const { return members_; }
  // O(1): kept up to date as members leave or fail (the barrier asks on every arrival).
  int active_members() const { return active_; }
  // Workers waiting to join, in arrival order.
  const std::vector<Member>& joiners() const { return joiners_; }
  // New workers asked to join the active generation (admitted at the next round boundary).
  bool admission_pending() const {
    return !forming_ && !joiners_.empty() && active_members() < options_.max_workers;
  }
  const std::string& end_reason() const { return end_reason_; }
  // The highest next_round among the members of the generation when it formed.
  int64_t formed_next_round() const { return formed_next_round_; }

 private:
  static absl::Status NotAlike(int co_rank, int rank, int64_t generation);
  // Marks members_[rank] as failed (or left), keeping active_ in step.
  void SetInactive(int rank, bool failed);

  const Options options_;
  int64_t generation_ = 0;
  bool forming_ = true;
  std::vector<Member> members_;  // of `generation_`, index = rank
  int active_ = 0;               // members_ that are active(); see SetInactive
  std::vector<Member> joiners_;
  // Survivors of the ended generation, by worker id, with their old rank.
  std::vector<std::pair<std::string, int>> expected_;
  absl::Time forming_since_;
  // The forming generation follows a coordinator restart (Recover): silent survivors are still
  // waited for, up to the regroup timeout.
  bool after_restart_ = false;
  std::string end_reason_;
  int64_t formed_next_round_ = 0;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_MEMBERSHIP_H_
