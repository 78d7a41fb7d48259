// RestartPolicy: what qsr-run does on a node when one of its workers exits.
//
// A worker that exits 0 has finished with the run. A worker that dies (a crash, SIGKILL, an
// out-of-memory kill, a lost GPU) is started again with the same worker id, so the coordinator
// sees it as restarted and re-forms the group with it at the next round boundary. Not when:
//   - it exited 2: a usage error (a bad flag or device) that a restart repeats;
//   - the run is over, or the coordinator does not answer (a worker exits non-zero when the run
//     FAILED; restarting it would only wait out its connect timeout);
//   - the node's restart budget (max_restarts, over all its workers, as torchrun's
//     --max-restarts) is spent.
// Restarts of the same worker back off: first_delay, then doubling up to max_delay, so a worker
// that dies at start does not spin.
//
// Pure logic (no processes, no clock of its own); not thread-safe.
#ifndef QSR_CLI_RESTART_POLICY_H_
#define QSR_CLI_RESTART_POLICY_H_

#include <map>
#include <string>

#include "absl/time/time.h"

namespace qsr {

class RestartPolicy {
 public:
  struct Options {
    int max_restarts = 3;
    absl::Duration first_delay = absl::Seconds(1);
    absl::Duration max_delay = absl::Seconds(30);
  };
  // What the node knows about the run when a worker exits.
  enum class Run {
    kGoingOn,     // the coordinator answers and the run is not over
    kOver,        // FINISHED, FAILED or stopped, or another worker of the node finished
    kUnreachable  // the coordinator did not answer
  };
  enum class Action { kFinished, kRestart, kGiveUp };
  struct Decision {
    Action action = Action::kGiveUp;
    absl::Time restart_at;  // kRestart: when to start it again
    int restart = 0;        // kRestart: this is the node's restart number `restart` (1-based)
    std::string reason;     // for the log line: why, in words
  };

  explicit RestartPolicy(Options options) : options_(options) {}

  // Worker `worker` exited with `exit_code` (128 + N when killed by signal N) at `now`.
  Decision OnExit(int worker, int exit_code, Run run, absl::Time now);

  int restarts() const { return restarts_; }

 private:
  Options options_;
  int restarts_ = 0;
  std::map<int, int> restarts_of_;  // per worker, for its backoff
};

// "exit code 1", "killed by SIGKILL" (exit codes above 128 are 128 + signal).
std::string DescribeExit(int exit_code);

}  // namespace qsr

#endif  // QSR_CLI_RESTART_POLICY_H_
