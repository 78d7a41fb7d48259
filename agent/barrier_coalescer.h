// BarrierCoalescer: the host agent's round-barrier bookkeeping (pure logic, no gRPC).
//
// The workers of one host each ask the agent for their next rounds (NextRounds). Instead of
// forwarding K calls, the agent holds them and sends the coordinator one call that carries all of
// the host's ranks (NextRoundsRequest.co_members), so the coordinator answers one call per host.
// This class decides when a held group goes out:
//   - at once when every local member of the generation has arrived for the same round: the
//     common case, where the host's workers finish a round within milliseconds of each other;
//   - when the oldest held arrival has waited `window`: a local worker that is slow, dead or
//     gone must not hide the others from the coordinator, whose straggler and failure handling
//     needs to know who has arrived; the late ones go out in a group of their own;
//   - at once, alone, for a worker the agent does not know as that rank of that generation (no
//     Join seen through this agent, e.g. after the agent restarted): it is not among the members
//     a group waits for;
//   - on Flush(generation), when the agent learns that the generation has ended or the run is
//     over: the coordinator answers the held calls with the authoritative outcome.
// Local members are learned from the Join replies the agent forwards (Admitted), from the
// coordinator's OK answers to the host's heartbeats and barrier calls (Confirmed: a restarted
// agent relearns its host within a heartbeat interval or one barrier), and from Leave (Left). A
// worker that asks again while its earlier arrival is still held replaces it (the older call is
// returned as superseded, to be answered TIMEOUT, as the coordinator would).
//
// Not thread-safe: the agent calls it under its own lock. Arrivals are identified by an id the
// caller chooses (unique among held arrivals).
#ifndef QSR_AGENT_BARRIER_COALESCER_H_
#define QSR_AGENT_BARRIER_COALESCER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace qsr {

class BarrierCoalescer {
 public:
  struct Arrival {
    uint64_t id = 0;
    std::string worker_id;
    int rank = 0;
    int64_t generation = 0;
    int64_t next_round = 0;
    // The caller's own deadline: the group's call upstream ends by the earliest of them.
    absl::Time deadline = absl::InfiniteFuture();
  };
  // Arrivals to send upstream as one call (same generation and round, distinct ranks).
  struct Group {
    int64_t generation = 0;
    int64_t next_round = 0;
    std::vector<Arrival> arrivals;
    absl::Time deadline = absl::InfiniteFuture();
  };

  explicit BarrierCoalescer(absl::Duration window) : window_(window) {}

  // `worker_id` is rank `rank` of `generation` (its Join was answered OK through this agent).
  // A worker belongs to one generation at a time: this replaces what it was before.
  void Admitted(const std::string& worker_id, int rank, int64_t generation);
  // The coordinator answered OK for `worker_id` as rank `rank` of `generation` (a heartbeat or a
  // barrier call): as Admitted, unless the agent already knows it in this or a later generation.
  void Confirmed(const std::string& worker_id, int rank, int64_t generation);
  // `worker_id` left the run. Returns groups that are complete without it.
  std::vector<Group> Left(const std::string& worker_id);

  // A worker asks for its next rounds. Returns the groups ready to go (perhaps this arrival's);
  // `*superseded` is set to the id of an earlier held arrival of the same worker that this one
  // replaces.
  std::vector<Group> Arrive(Arrival arrival, absl::Time now, std::optional<uint64_t>* superseded);
  // Groups whose oldest arrival has waited `window` by `now`.
  std::vector<Group> Expire(absl::Time now);
  // Every held group of `generation` (all generations when nullopt).
  std::vector<Group> Flush(std::optional<int64_t> generation);
  // When Expire next has something to do; InfiniteFuture when nothing is held.
  absl::Time NextExpiry() const;

  int held() const;
  // Local members of `generation` known to the agent.
  int LocalMembers(int64_t generation) const;
  // Local workers known in any generation.
  int KnownWorkers() const { return static_cast<int>(members_.size()); }

 private:
  struct Held {
    absl::Time first_arrival;
    std::vector<Arrival> arrivals;
  };
  using Key = std::pair<int64_t, int64_t>;  // (generation, next_round)

  Group Take(std::map<Key, Held>::iterator it);

  const absl::Duration window_;
  struct Member {
    int rank = 0;
    int64_t generation = 0;
  };
  std::map<std::string, Member> members_;          // by worker id
  std::map<int64_t, int> members_per_generation_;  // generation -> local members
  std::map<Key, Held> held_;
};

}  // namespace qsr

#endif  // QSR_AGENT_BARRIER_COALESCER_H_
