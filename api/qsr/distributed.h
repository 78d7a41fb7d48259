// Joining a group of training processes: rank, world size, and a Communicator to average over.
//
// Two ways in, both giving a DistributedContext:
//
//   InitFromEnvironment(): a static world, started by torchrun, Kubeflow's PyTorchJob or by hand.
//     Every process gets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (and, from torchrun,
//     LOCAL_RANK, LOCAL_WORLD_SIZE, TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT).
//     The rendezvous store is LibTorch's c10d TCPStore (worker/comm/c10d_store.h), used exactly as
//     torch.distributed's env:// initialisation uses it:
//       - TORCHELASTIC_USE_AGENT_STORE=True (torchrun): torchrun's agent already serves the store
//         on MASTER_ADDR:MASTER_PORT; every rank connects to it as a client, and keys live under
//         "/worker/attempt_<TORCHELASTIC_RESTART_COUNT>/" so a restarted attempt never reads the
//         keys of the one before.
//       - otherwise (a PyTorchJob, a hand-started job): rank 0 serves the store on MASTER_PORT
//         (every local address) and the others connect to MASTER_ADDR:MASTER_PORT, retrying
//         while rank 0 is not up yet.
//     No coordinator involved.
//
//   InitWithCoordinator(address): join a qsr-coordinator run (HOST:PORT), which assigns the rank
//     and world size (its recipe's `workers`) and holds the rendezvous keys. The coordinator's
//     recipe is informational here (recipe()): your loop decides the schedule. This process
//     joins as one that plans its own rounds: a LocalOptimizer created with the context reports
//     every round it trained (ReportRound), the coordinator logs each one in its run folder's
//     rounds.jsonl once every rank has reported it and shows the step in `qsrctl status`, and the
//     run is FINISHED when every process has called Finish() without an error. Use qsr-worker
//     when you want the coordinator to drive the rounds.
//
// Device. options.device "cuda" (no index) means cuda:LOCAL_RANK when the environment gives
// LOCAL_RANK (one process per GPU, as torchrun starts them), else cuda:0's default; "cuda:N" is
// taken as it is. device() says which device the communicator uses: put the model there.
//
// Either way, the processes then build one full mesh of Gloo connections (device "cpu"; NCCL for
// "cuda[:N]" in builds that have it) and pass a barrier, so when Init returns every rank is
// connected and communicator() is ready for collectives.
//
// Deadlines. options.timeout bounds reaching the store or coordinator, meeting every peer, and
// then every collective of the communicator; nothing waits forever. A missing peer makes Init
// fail with DEADLINE_EXCEEDED naming what was missing.
//
// Lifecycle. Keep the context alive while you train: it owns the communicator and the store, and
// without torchrun's agent, rank 0's store serves the others' rendezvous. Finish() (or the
// destructor) ends membership; it is idempotent. Destroying the context closes the connections:
// peers still inside a collective fail promptly rather than waiting for their timeout.
//
// Thread-safety. The accessors are const and thread-safe; Finish() and the communicator's
// collectives must be called from one thread at a time (see worker/comm/communicator.h).
//
// Host address. Gloo's transport binds and advertises `options.host` so that peers can connect to
// it. Empty means: $QSR_HOST if set; else 127.0.0.1 when MASTER_ADDR (or the coordinator) is a
// loopback address (a single machine); else this machine's hostname, which must resolve to an
// address the peers can reach.
#ifndef QSR_API_QSR_DISTRIBUTED_H_
#define QSR_API_QSR_DISTRIBUTED_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "rendezvous/store.h"
#include "worker/comm/communicator.h"

namespace qsr {

struct DistributedOptions {
  // "cpu" (Gloo), or "cuda" / "cuda:N" (NCCL, in builds that found CUDA and NCCL).
  std::string device = "cpu";
  // The address peers reach this process's transport on; see "Host address" above.
  std::string host;
  // Bound on the rendezvous and on each collective. Zero: 5 minutes for a static world, the
  // coordinator's rendezvous timeout with a coordinator.
  absl::Duration timeout = absl::ZeroDuration();
  // Coordinator: this process's unique worker id. Empty: "<hostname>:<pid>".
  std::string worker_id;
  // Coordinator: TLS. `tls_ca` (PEM) turns it on and is what the coordinator's certificate is
  // verified against; `tls_cert` + `tls_key` are this process's, for a coordinator that requires
  // client certificates (mutual TLS). Empty: plain connection.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // Coordinator: a file holding the run's shared token. Empty: $QSR_TOKEN, if set.
  std::string token_file;
};

// A round this process trained, as LocalOptimizer reports it.
struct RoundResult {
  Round round;  // start_step, h, lr of its first step (index: see ReportRound)
  // Mean training loss over the round's steps; NaN when not known.
  double train_loss = 0.0;
  double seconds = 0.0;    // wall time of the round
  int64_t bytes_sent = 0;  // by this process's collectives in the round
  // FNV-1a hash of the parameters when the round ended averaged (every rank's is the same, and
  // the coordinator checks that); 0: not computed.
  uint64_t params_digest = 0;
};

// A static world's shape, as torchrun passes it.
struct StaticWorld {
  std::string master_addr;  // where the store is served (by rank 0 or torchrun's agent)
  int master_port = 0;
  int rank = 0;
  int world_size = 1;
  // This process's index among the processes of its machine, and their number; -1: not given.
  int local_rank = -1;
  int local_world_size = -1;
  // torchrun's agent serves the store: every rank connects as a client, keys under
  // "/worker/attempt_<restart_count>/".
  bool use_agent_store = false;
  int restart_count = 0;
};

// Reads RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (the last two may be absent when WORLD_SIZE
// is 1), and when set LOCAL_RANK, LOCAL_WORLD_SIZE, TORCHELASTIC_USE_AGENT_STORE (agent store
// when "True", as torch.distributed reads it) and TORCHELASTIC_RESTART_COUNT. INVALID_ARGUMENT
// naming the variable when one is missing or malformed (LOCAL_RANK must be below
// LOCAL_WORLD_SIZE, and the agent store needs MASTER_ADDR and MASTER_PORT).
absl::StatusOr<StaticWorld> StaticWorldFromEnvironment();

class DistributedContext {
 public:
  ~DistributedContext();
  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const;
  int size() const;
  // The static world's LOCAL_RANK / LOCAL_WORLD_SIZE; -1 when not given (and with a coordinator).
  int local_rank() const;
  int local_size() const;
  // The device the communicator works on, e.g. "cpu" or "cuda:1" (see "Device" above).
  const std::string& device() const;
  // The communicator, ready for collectives (AllReduceSum, Broadcast); hand it to LocalOptimizer.
  Communicator& communicator();
  // The rendezvous store (under torchrun's agent store: this attempt's keys, as torch.distributed
  // scopes them), otherwise unscoped: to bootstrap more communicators (CreateCommunicator from
  // worker/comm/communicator_factory.h) under a key prefix of your own, e.g. PrefixStore("c1").
  // With a static world whose rank 0 serves the store, rank 0's context must outlive the other
  // ranks' use of it.
  Store& store();
  // With a coordinator: its run id, generation and resolved recipe. Otherwise "", 0, nullopt.
  const std::string& run_id() const;
  int64_t generation() const;
  const std::optional<Recipe>& recipe() const;

  // Ends this process's membership. With a coordinator, first sends the rounds still queued
  // (ReportRound; within 30 s), then tells it that this worker leaves, with `status`'s message as
  // the error when it is not OK, or else the reports' error when they could not be delivered (the
  // coordinator then fails the run); returns the leave call's error, else the reports'. Without
  // one, only records that it finished. The communicator stays usable until the context is
  // destroyed. Idempotent: later calls return OK and do nothing. The destructor calls Finish() if
  // you did not.
  absl::Status Finish(const absl::Status& status = absl::OkStatus());

  // With a coordinator: queues `result` for it (sent off the training thread about once a second;
  // Finish() sends what is left first). Rounds are numbered by the context, in the order
  // reported, from the coordinator's start round; each must start where the one before ended
  // (the first anywhere from the run's start step on), and every rank must report the same
  // rounds. A round the coordinator refuses (a gap, an overlap, past the recipe's total steps)
  // makes Finish() return its error. Without a coordinator: does nothing. Call it from the
  // thread that trains; a LocalOptimizer created with this context does.
  void ReportRound(const RoundResult& result);
  // Whether ReportRound goes anywhere (there is a coordinator).
  bool reports_rounds() const;

  struct Impl;  // Private to the implementation.
  explicit DistributedContext(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// Joins the static world `world`; see above.
absl::StatusOr<std::unique_ptr<DistributedContext>> InitStaticWorld(
    const StaticWorld& world, const DistributedOptions& options = {});
// StaticWorldFromEnvironment() then InitStaticWorld().
absl::StatusOr<std::unique_ptr<DistributedContext>> InitFromEnvironment(
    const DistributedOptions& options = {});
// Joins the coordinator's run at `address` (HOST:PORT), retrying while it is not up yet (within
// options.timeout, or 60 s). FAILED_PRECONDITION when it refuses this worker (the run is full).
absl::StatusOr<std::unique_ptr<DistributedContext>> InitWithCoordinator(
    const std::string& address, const DistributedOptions& options = {});

}  // namespace qsr

#endif  // QSR_API_QSR_DISTRIBUTED_H_
