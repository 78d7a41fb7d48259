#include "cli/slurm_launcher.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/node_launcher.h"
#include "cli/node_options.h"
#include "cli/process_group.h"
#include "cli/run_commands.h"

namespace qsr {
namespace {

// Task 0's coordinator: started into `group` with its output straight to its log (nobody pumps
// the group while the node runs).
absl::Status StartCoordinator(const FlagParser& flags, const std::string& bin_dir, int port,
                              int total, const std::string& run_id, const std::string& run_dir,
                              ProcessGroup& group) {
  ProcessGroup::Output out;
  out.echo = false;
  out.piped = false;
  out.log_path = run_dir + "/coordinator.log";
  const CoordinatorLaunch launch{bin_dir,
                                 absl::StrCat(flags.Get("listen-host"), ":", port),
                                 run_dir,
                                 run_id,
                                 run_dir + "/coordinator.port",
                                 total};
  return group.Spawn("coord", CoordinatorArgv(flags, launch), out).status();
}

// The run is over for this node; the coordinator ends once every node has reported (or is
// stopped after 60 s, or at a signal, with 30 s to write its summary).
void AwaitCoordinator(ProcessGroup& group, volatile std::sig_atomic_t* signal) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!group.ExitCode(0)) {
    if (absl::Now() > deadline || *signal) {
      group.TerminateAll(absl::Seconds(30));
      return;
    }
    group.Pump(absl::Milliseconds(100));
  }
}

}  // namespace

int RunSlurm(const FlagParser& flags, const SlurmTask& task, volatile std::sig_atomic_t* signal,
             void (*catch_signals)()) {
  const int64_t port = flags.Int("port");
  if (port < 1 || port > 65535)
    return QsrRunUsageError(
        absl::StrCat("--port is ", port, "; under Slurm every node must know it: 1 to 65535"));
  const int total = static_cast<int>(flags.Int("nproc-per-node")) * task.ntasks;
  const bool first = task.procid == 0;
  if (first) {
    if (absl::Status s = CheckRecipeFor(flags, std::max(total, 1)); !s.ok())
      return QsrRunUsageError(std::string(s.message()));
  }
  const std::string coordinator = absl::StrCat(task.nodes[0], ":", port);
  absl::StatusOr<NodeLauncher::Options> o =
      NodeOptionsFromFlags(flags, coordinator, absl::StrCat("node", task.nodeid));
  if (!o.ok()) return QsrRunUsageError(std::string(o.status().message()));
  // One --log-dir on the command line of every task (a shared folder, often): a node each.
  if (flags.IsSet("log-dir")) o->log_dir = absl::StrCat(o->log_dir, "/node", task.nodeid);
  catch_signals();
  ProcessGroup coord;
  std::string run_dir;
  if (first) {
    const std::string run_id = RunIdFrom(flags);
    run_dir = RunDirFrom(flags, run_id);
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    if (ec) return QsrRunUsageError("cannot create run directory " + run_dir + ": " + ec.message());
    if (absl::Status s = StartCoordinator(flags, o->bin_dir, static_cast<int>(port), total, run_id,
                                          run_dir, coord);
        !s.ok()) {
      return QsrRunUsageError(std::string(s.message()));
    }
    std::cout << "qsr-run: Slurm task 0 on " << task.nodes[0] << ": coordinator at " << coordinator
              << " for " << total << " workers on " << task.ntasks << " nodes; its log " << run_dir
              << "/coordinator.log" << std::endl;
  }
  int code = NodeLauncher(*std::move(o)).Run(signal);
  if (first) {
    AwaitCoordinator(coord, signal);
    const RunSummary summary = EchoRunSummary(run_dir);
    if (code == 0 && summary.state != "FINISHED") code = 1;
  }
  return code;
}

}  // namespace qsr
