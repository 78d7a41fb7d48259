// Where the nodes of a multi-host run come from: a DeepSpeed-style hostfile (qsr-run --hostfile)
// or the environment of a Slurm step (srun qsr-run), and the command that starts a node on a
// remote host (qsr-run --launcher).
//
// Pure functions; thread-safe.
#ifndef QSR_CLI_LAUNCH_PLAN_H_
#define QSR_CLI_LAUNCH_PLAN_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace qsr {

struct HostSlots {
  std::string host;
  int slots = 0;
};

// DeepSpeed's hostfile: one `HOST slots=N` per line (N from 1 to 1024); `#` starts a comment;
// blank lines are skipped; a host named twice is an error. INVALID_ARGUMENT naming `name`, the
// line number and the line's text otherwise, and for a file without hosts.
absl::StatusOr<std::vector<HostSlots>> ParseHostfile(absl::string_view text,
                                                     const std::string& name);

// Slurm's compressed host list: "node[01-03,7],gpu1" is node01 node02 node03 node7 gpu1
// (zero padding kept). INVALID_ARGUMENT naming the list when it does not parse.
absl::StatusOr<std::vector<std::string>> ExpandHostlist(absl::string_view list);

// One task of a Slurm step, from SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, SLURM_NTASKS and
// SLURM_STEP_NODELIST (SLURM_JOB_NODELIST when the step's is unset).
struct SlurmTask {
  int procid = 0;
  int localid = 0;
  int nodeid = 0;
  int ntasks = 0;
  std::vector<std::string> nodes;
};

// nullopt when SLURM_PROCID is unset (not in a Slurm step). qsr-run runs once per node
// (`srun --ntasks-per-node=1`): INVALID_ARGUMENT, naming the variable and its value, for a
// missing or bad variable, SLURM_LOCALID other than 0, or SLURM_NTASKS other than the number of
// nodes in the list.
absl::StatusOr<std::optional<SlurmTask>> SlurmTaskFromEnv(
    const std::function<const char*(const char*)>& getenv);

// `word` quoted for a POSIX shell (unchanged when it has nothing the shell would interpret).
std::string ShellQuote(const std::string& word);

// The command that runs `remote` on `host`: `launcher` split at spaces, every "{host}" in it
// replaced by the host (a launcher without "{host}" gets the host as its next word, as `ssh`
// wants), followed by one word: the shell command `cd CWD && exec REMOTE...`, quoted.
std::vector<std::string> RemoteCommand(const std::string& launcher, const std::string& host,
                                       const std::string& cwd,
                                       const std::vector<std::string>& remote);

}  // namespace qsr

#endif  // QSR_CLI_LAUNCH_PLAN_H_
