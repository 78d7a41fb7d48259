// NodeLauncher: one node of a multi-host run, as `qsr-run --coordinator HOST:PORT
// --nproc-per-node N` starts it: a qsr-agent on loopback and N workers behind it.
//
// Lifecycle (Run): waits (bounded) until the coordinator answers, without starting anything
// before; starts the agent, then the workers (worker i: `--worker-id NODE-wI`, its device, the
// node's --host); restarts a worker that dies as RestartPolicy decides (same worker id: the
// coordinator re-forms the group with it at a round boundary); prints a progress line with the
// ETA; ends when every worker has finished or been given up on, then stops the agent. SIGINT or
// SIGTERM (seen through `*signal`) are passed to every child, which get `grace` to exit before
// SIGKILL. Each process's output goes to LOG_DIR/NAME.log (a restart appends).
//
// Not thread-safe: Run() owns the calling thread until it returns.
#ifndef QSR_CLI_NODE_LAUNCHER_H_
#define QSR_CLI_NODE_LAUNCHER_H_

#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cli/process_group.h"
#include "cli/restart_policy.h"
#include "client/connection_security.h"
#include "client/ops_client.h"

namespace qsr {

class NodeLauncher {
 public:
  struct Options {
    std::string coordinator;               // HOST:PORT
    ClientSecurity security;               // qsr-run's own status calls
    std::vector<std::string> agent_flags;  // the agent's client security flags
    std::string node_name;                 // worker ids are NODE-w0, NODE-w1, ...
    std::string host;                      // the workers' --host (peers reach them there)
    std::vector<std::string> devices;      // one per worker
    std::string bin_dir;                   // qsr-agent and qsr-worker
    std::string log_dir;
    int threads = 1;
    std::string data_dir;
    std::string model_path;  // passed as --model-path when set
    std::string heap = "keep";
    RestartPolicy::Options restart;
    absl::Duration coordinator_wait = absl::Seconds(60);
    absl::Duration progress_every = absl::Seconds(30);  // zero: no progress lines
    absl::Duration grace = absl::Seconds(30);
  };

  explicit NodeLauncher(Options options) : options_(std::move(options)) {}

  // 0: the run finished and every worker with it; 1: a worker was given up on or the run
  // failed; 2: the coordinator did not answer within coordinator_wait (nothing was started);
  // 128 + N: stopped by signal N.
  int Run(volatile std::sig_atomic_t* signal);

 private:
  struct Supervision;
  std::string Prefix() const;
  // Waits (bounded) for the coordinator's status; the exit code when the node must not start.
  std::optional<int> AwaitRun(OpsClient& client, volatile std::sig_atomic_t* signal,
                              v1::GetStatusReply* status);
  // The agent (once it serves) and the workers; the exit code when they cannot all start.
  std::optional<int> StartProcesses(ProcessGroup& group, volatile std::sig_atomic_t* signal,
                                    const std::string& run_id);
  // Restarts the workers whose time has come and decides on the ones that have exited.
  void Supervise(ProcessGroup& group, OpsClient& client, RestartPolicy& policy, Supervision& sup);
  void OnWorkerExit(int i, ProcessGroup& group, OpsClient& client, RestartPolicy& policy,
                    Supervision& sup);

  Options options_;
};

}  // namespace qsr

#endif  // QSR_CLI_NODE_LAUNCHER_H_
