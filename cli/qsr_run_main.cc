// qsr-run: a coordinator and N workers on this machine, as one command; or one node of a
// multi-host run, or the launcher of every node (--hostfile, Slurm). See --help.
#include <csignal>
#include <cstdlib>
#include <optional>
#include <string>

#include "cli/hostfile_launcher.h"
#include "cli/launch_plan.h"
#include "cli/local_run.h"
#include "cli/node_launcher.h"
#include "cli/node_options.h"
#include "cli/qsr_run_flags.h"
#include "cli/run_commands.h"
#include "cli/slurm_launcher.h"

namespace {

volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

void CatchSignals(bool hangup) {
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  // A node started over `ssh -tt` gets SIGHUP when the launching side goes away, and must take
  // its workers down with it.
  if (hangup) std::signal(SIGHUP, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
}

void CatchNodeSignals() { CatchSignals(true); }

// qsr-run --coordinator HOST:PORT --nproc-per-node N: this node's agent and workers.
int RunNode(const qsr::FlagParser& flags) {
  if (!flags.Get("recipe").empty()) {
    return qsr::QsrRunUsageError(
        "--recipe goes to the qsr-run that starts the coordinator, not with --coordinator "
        "(the workers take the run's recipe from the coordinator)");
  }
  absl::StatusOr<qsr::NodeLauncher::Options> o =
      qsr::NodeOptionsFromFlags(flags, flags.Get("coordinator"), "");
  if (!o.ok()) return qsr::QsrRunUsageError(std::string(o.status().message()));
  CatchNodeSignals();
  return qsr::NodeLauncher(*std::move(o)).Run(&g_signal);
}

}  // namespace

int main(int argc, char** argv) {
  qsr::FlagParser flags = qsr::QsrRunFlags();
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (!flags.Get("coordinator").empty()) return RunNode(flags);
  if (!flags.Get("hostfile").empty()) {
    CatchNodeSignals();
    return qsr::RunHostfile(flags, &g_signal);
  }
  if (flags.IsSet("nproc-per-node")) {
    absl::StatusOr<std::optional<qsr::SlurmTask>> slurm =
        qsr::SlurmTaskFromEnv([](const char* name) { return std::getenv(name); });
    if (!slurm.ok()) return qsr::QsrRunUsageError(std::string(slurm.status().message()));
    if (slurm->has_value()) return qsr::RunSlurm(flags, **slurm, &g_signal, &CatchNodeSignals);
  }
  for (const char* node_only : {"nproc-per-node", "host", "node-name", "log-dir", "max-restarts",
                                "restart-delay", "coordinator-wait"}) {
    if (flags.IsSet(node_only)) {
      return qsr::QsrRunUsageError(std::string("--") + node_only +
                                   " goes with --coordinator HOST:PORT, --hostfile FILE or srun");
    }
  }
  CatchSignals(false);
  return qsr::RunLocal(flags, &g_signal);
}
