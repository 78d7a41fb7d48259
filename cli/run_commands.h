// The command lines qsr-run starts, built from its flags: the coordinator's, a local worker's,
// and a node's (the qsr-run that --hostfile starts on each host), with the security flags each
// side is given. Also the small decisions every form of qsr-run shares: the run's id, its
// folder, where the binaries are, and the check of the recipe before anything starts.
//
// Pure functions of the flags (RunIdFrom and BinDirFrom read the clock, the pid and
// /proc/self/exe); thread-compatible.
#ifndef QSR_CLI_RUN_COMMANDS_H_
#define QSR_CLI_RUN_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cli/run_dir.h"
#include "common/flags.h"

namespace qsr {

// Prints "qsr-run: MESSAGE" to stderr; returns 2, the exit code of a usage error.
int QsrRunUsageError(const std::string& message);

// The coordinator's own security flags, as given: --tls-cert, --tls-key, --tls-client-ca,
// --token-file, --token-protect-reads.
std::vector<std::string> CoordinatorSecurityArgs(const FlagParser& flags);

// The flags a client of the coordinator (a worker, an agent) gets from qsr-run's
// --tls-ca/--tls-client-cert/--tls-client-key/--tls-server-name/--token-file, under the client's
// names (--tls-ca, --tls-cert, --tls-key, --tls-server-name, --token-file); --tls first when `tls`.
std::vector<std::string> ClientSecurityArgs(const FlagParser& flags, bool tls);

struct CoordinatorLaunch {
  std::string bin_dir;  // where qsr-coordinator is
  std::string listen;   // HOST:PORT
  std::string run_dir;
  std::string run_id;
  std::string port_file;
  int workers = 0;  // > 0: --workers=N replaces any --workers override
};

// qsr-coordinator with --recipe, the launch's values, the security flags and the recipe
// overrides.
std::vector<std::string> CoordinatorArgv(const FlagParser& flags, const CoordinatorLaunch& launch);

// Worker `index` of a single-machine run: its id is RUN_ID-wINDEX.
std::vector<std::string> LocalWorkerArgv(const FlagParser& flags, const std::string& bin_dir,
                                         const std::string& coordinator, const std::string& run_id,
                                         int threads, const std::string& device, int index);

// The qsr-run --coordinator command that --hostfile starts on host `index` with `slots` workers:
// the node flags given here passed on, its log under RUN_DIR/logs/nodeINDEX.
std::vector<std::string> HostfileNodeArgv(const FlagParser& flags, const std::string& bin_dir,
                                          const std::string& coordinator,
                                          const std::string& run_dir, int index, int slots);

// --run-id, or DATE-TIME-PID.
std::string RunIdFrom(const FlagParser& flags);
// --run-dir, or runs/RUN_ID.
std::string RunDirFrom(const FlagParser& flags, const std::string& run_id);
// --bin-dir, or the folder qsr-run itself is in.
std::string BinDirFrom(const FlagParser& flags);

// The recipe (--recipe with the overrides and --workers set to `workers`) loads and checks; the
// error says what is wrong with it.
absl::Status CheckRecipeFor(const FlagParser& flags, int workers);

// Prints "qsr-run: summary ..." when RUN_DIR/summary.json exists; what it says (empty state when
// it is absent or unreadable).
RunSummary EchoRunSummary(const std::string& run_dir);

}  // namespace qsr

#endif  // QSR_CLI_RUN_COMMANDS_H_
