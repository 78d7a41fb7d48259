// qsr-run under Slurm (srun --ntasks-per-node=1 qsr-run --recipe FILE --nproc-per-node N): the
// task of node 0 (the first host of SLURM_STEP_NODELIST) starts the coordinator on --port, with
// its output in RUN_DIR/coordinator.log; every task, that one included, runs its node's agent
// and workers (NodeLauncher) against FIRST_HOST:PORT.
//
// Runs on the calling thread; SIGINT/SIGTERM/SIGHUP are seen through `*signal`.
#ifndef QSR_CLI_SLURM_LAUNCHER_H_
#define QSR_CLI_SLURM_LAUNCHER_H_

#include <csignal>

#include "cli/launch_plan.h"
#include "common/flags.h"

namespace qsr {

// The node's exit code (NodeLauncher::Run's); on task 0 also 1 when the run did not FINISH.
// 2: a usage error, nothing started. `catch_signals` is called once the flags are checked.
int RunSlurm(const FlagParser& flags, const SlurmTask& task, volatile std::sig_atomic_t* signal,
             void (*catch_signals)());

}  // namespace qsr

#endif  // QSR_CLI_SLURM_LAUNCHER_H_
