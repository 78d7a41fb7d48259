// JoinedGroup: this process's membership in a coordinator's run, as a worker and a program on the
// qsr library (api/) both hold it: joining (and joining the next generation after a failure),
// heartbeats, the generation's rendezvous keys, the barrier that hands out rounds, reports'
// identity, and leaving.
//
// The heartbeats run on a thread of their own from the first Join on. When the coordinator
// answers that the generation has ended, the group remembers it (ended()) and aborts the
// communicator given to Watch() for that generation, so that a collective waiting on a dead or
// stopped peer fails at once instead of at its timeout.
//
// Thread-safety: the methods are called from one thread (the training thread); the heartbeat
// thread's callback takes a lock of its own. Lifecycle: Join once, then
// any number of Rejoin after failures, then Leave (the destructor stops the heartbeats without
// leaving). The client must outlive the group; a watched communicator must stay alive until the
// next Watch, Rejoin or Leave.
#ifndef QSR_WORKER_JOINED_GROUP_H_
#define QSR_WORKER_JOINED_GROUP_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/coordinator_client.h"
#include "client/heartbeater.h"
#include "rendezvous/store.h"
#include "worker/comm/communicator.h"

namespace qsr {

// Who this process is, as Join tells the coordinator.
struct GroupMember {
  std::string worker_id;  // unique per process
  std::string host;       // address peers reach this process's transport on
  std::string device;
  // Plans its own rounds and reports them (a qsr library program): see JoinRequest.self_planned.
  bool self_planned = false;
};

class JoinedGroup {
 public:
  JoinedGroup(CoordinatorClient* client, GroupMember member);
  ~JoinedGroup();

  // Joins the run, asking again while the coordinator is unreachable or the generation forms,
  // for up to `timeout`; heartbeats start. FAILED_PRECONDITION (with the coordinator's reason)
  // when it refuses this member; transport errors as the client's.
  absl::Status Join(absl::Duration timeout);
  // After the generation failed: joins the next one, saying that this member's state is ready
  // for `next_round` and, when `failure` is not OK, that it made this member leave the
  // generation (OK: the coordinator ended it; see ended()). Sets *finished (and returns OK) when
  // the run ended meanwhile. FAILED_PRECONDITION when the coordinator now serves another run,
  // ABORTED when it refuses.
  absl::Status Rejoin(int64_t next_round, const absl::Status& failure, absl::Duration timeout,
                      bool* finished);
  // The coordinator's answer to the last Join or Rejoin (rank, world size, generation, recipe...).
  const v1::JoinReply& join() const { return join_; }

  // A store for this generation's rendezvous: the coordinator's key-value store under
  // "<run>/g<generation>/c0/", fresh per generation so that a re-formed group never reads the
  // previous group's addresses. Valid until the group is destroyed.
  std::unique_ptr<Store> RendezvousStore();
  // The communicator to abort when the coordinator ends the current generation (null: none).
  void Watch(Communicator* comm);

  // The next rounds from `next_round` on (the coordinator's barrier). Transport errors are
  // retried for up to two minutes; ABORTED when the generation ended meanwhile. The reply's
  // outcome GENERATION_ENDED marks the generation ended too.
  absl::StatusOr<v1::NextRoundsReply> NextRounds(int64_t next_round);
  // Whether the coordinator said that the current generation has ended.
  bool ended() const;
  // The step this member is at, sent with each heartbeat.
  void SetStep(int64_t step);
  // worker_id, rank and generation, for a ReportSender.
  v1::ReportRequest ReportIdentity() const;

  // Stops the heartbeats (Leave does too).
  void StopHeartbeats();
  // Stops the heartbeats and tells the coordinator this member leaves the run: finished (empty
  // `error`) or failed. Returns the call's status (OK without a Join, and when called again);
  // the coordinator notices a silent member anyway.
  absl::Status Leave(const std::string& error);

 private:
  v1::JoinRequest Request() const;
  void Admit(const v1::JoinReply& joined);
  void OnEnded(int64_t generation, const v1::Outcome& outcome);

  CoordinatorClient* const client_;
  const GroupMember member_;
  // Tells this process from an earlier one with the same worker id.
  const std::string incarnation_;
  CoordinatorStore store_;
  v1::JoinReply join_;
  bool joined_ = false;
  // Set when NextRounds answered GENERATION_ENDED for the current generation.
  bool over_ = false;
  // The generation the heartbeat thread was told has ended.
  std::atomic<int64_t> ended_generation_{-1};
  absl::Mutex comm_mu_;
  Communicator* watched_ ABSL_GUARDED_BY(comm_mu_) = nullptr;
  int64_t watched_generation_ ABSL_GUARDED_BY(comm_mu_) = -1;
  // Declared last: its thread calls OnEnded, so it stops before the rest goes.
  std::unique_ptr<Heartbeater> heartbeater_;
};

}  // namespace qsr

#endif  // QSR_WORKER_JOINED_GROUP_H_
