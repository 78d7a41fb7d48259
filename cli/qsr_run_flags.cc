#include "cli/qsr_run_flags.h"

namespace qsr {
namespace {

// The run on this machine, and what every worker is given.
void AddRunFlags(FlagParser& flags) {
  flags.Add("recipe", "", "recipe YAML file (required)");
  flags.Add("run-dir", "", "run directory (default runs/RUN_ID)");
  flags.Add("run-id", "", "name of the run (default: date-time-pid)");
  flags.Add("data-dir", "", "dataset location, passed to every worker");
  flags.Add("model-path", "",
            "model torchscript: the TorchScript file, passed to every worker (overrides the "
            "recipe's model_path)");
  flags.AddInt("threads", 0, "intra-op threads per worker (0 = cores / workers)");
  flags.Add("device", "cpu",
            "cpu; cuda (worker i on cuda:i); or one cuda:N per worker, comma-separated");
  flags.AddDuration("progress", absl::Seconds(5),
                    "time between progress lines (with --coordinator: default 30s, 0s: none)");
  flags.AddDeprecatedAlias("progress-s", "progress", "s");
  flags.Add("heap", "keep",
            "the workers' heap: keep (memory a step frees is reused) or system (glibc's "
            "defaults); passed to every worker");
  flags.Add("bin-dir", "", "where qsr-coordinator and qsr-worker are (default: beside qsr-run)");
  flags.Add("snapshot-dir", "",
            "rank 0 writes the averaged model here for time-to-accuracy curves (passed to the "
            "workers; see qsr-worker --help)");
  flags.AddDouble("snapshot-every", 0.0625,
                  "with --snapshot-dir: epochs between snapshots, or every sync if syncs are "
                  "rarer");
}

// Security, passed through: the coordinator's side, then the workers' (and qsr-run's own).
void AddSecurityFlags(FlagParser& flags) {
  flags.Add("tls-cert", "", "the coordinator's PEM certificate (turns on TLS; with --tls-key)");
  flags.Add("tls-key", "", "the coordinator's PEM private key");
  flags.Add("tls-client-ca", "", "the coordinator requires client certificates signed by this CA");
  flags.Add("tls-ca", "", "the CA the workers verify the coordinator's certificate against");
  flags.Add("tls-client-cert", "", "the workers' PEM certificate, for mutual TLS");
  flags.Add("tls-client-key", "", "the workers' PEM private key, for mutual TLS");
  flags.Add("tls-server-name", "", "name the workers verify the coordinator's certificate as");
  flags.Add("token-file", "", "file with the run's shared token (default: $QSR_TOKEN)");
  flags.AddBool("token-protect-reads", "the coordinator requires the token for status reads too");
}

// A node of a multi-host run (--coordinator).
void AddNodeFlags(FlagParser& flags) {
  flags.Add("coordinator", "", "join the run of the coordinator at HOST:PORT as one node");
  flags.AddInt("nproc-per-node", 1, "with --coordinator: workers on this node");
  flags.Add("host", "",
            "with --coordinator: the address peers reach this node's workers on (default: the "
            "local address of the route to the coordinator)");
  flags.Add("node-name", "",
            "with --coordinator: worker ids are NAME-w0, NAME-w1, ... (default: "
            "the --host address); unique per node and the same when the node is started again");
  flags.Add("log-dir", "",
            "with --coordinator: one log per process here (default qsr-logs/NODE-DATE-PID)");
  flags.AddInt("max-restarts", 3,
               "with --coordinator: restarts of dead workers allowed on this node, all together");
  flags.AddDuration("restart-delay", absl::Seconds(1),
                    "with --coordinator: wait before a restart, doubling for each restart of the "
                    "same worker (at most 30s)");
  flags.AddDuration("coordinator-wait", absl::Seconds(60),
                    "with --coordinator: how long to wait for the coordinator to answer before "
                    "giving up (exit 2, nothing started)");
  flags.AddDuration("grace", absl::Seconds(30),
                    "on SIGINT/SIGTERM: how long children get to exit before SIGKILL");
  // Names from before durations carried their unit; they keep working with a warning.
  flags.AddDeprecatedAlias("restart-delay-s", "restart-delay", "s");
  flags.AddDeprecatedAlias("coordinator-wait-s", "coordinator-wait", "s");
  flags.AddDeprecatedAlias("grace-s", "grace", "s");
  flags.AddBool("tls", "with --coordinator: TLS to the coordinator with the system's CAs");
}

// Launching every node from here (--hostfile) or from Slurm (srun qsr-run).
void AddLaunchFlags(FlagParser& flags) {
  flags.Add("hostfile", "",
            "start the coordinator here and one node per line of FILE (DeepSpeed's format: HOST "
            "slots=N) through --launcher");
  flags.Add("launcher", "ssh -o BatchMode=yes {host}",
            "with --hostfile: the command prefix that runs a command on a host; {host} is "
            "replaced by the host (appended when absent); the node's command follows as one "
            "shell word");
  flags.AddInt("port", 7070,
               "with --hostfile (0: the OS chooses) or under Slurm: the coordinator's port");
  flags.Add("listen-host", "0.0.0.0",
            "with --hostfile or under Slurm: the address the coordinator listens on");
  flags.Add("coordinator-addr", "",
            "with --hostfile: the address the nodes reach the coordinator on (default: the "
            "local address of the route to the first host)");
}

}  // namespace

FlagParser QsrRunFlags() {
  FlagParser flags(
      "qsr-run",
      "qsr-run --workers N --recipe FILE [--device cpu|cuda|cuda:0,cuda:1] [--run-dir DIR] "
      "[--KEY=VALUE ...]\n"
      "qsr-run --coordinator HOST:PORT --nproc-per-node N [--device cpu|cuda] [--host ADDR]\n"
      "The first form starts a coordinator and N workers on this machine, shows progress, and "
      "ends with the test accuracy, the number of averaging rounds and the bytes each worker "
      "sent. The second, once on each node of a multi-host run, starts a qsr-agent and N "
      "workers that join the coordinator's run, restarts a worker that dies, and writes each "
      "process's log under --log-dir.");
  AddRunFlags(flags);
  AddSecurityFlags(flags);
  AddNodeFlags(flags);
  AddLaunchFlags(flags);
  flags.AcceptRecipeOverrides();
  return flags;
}

}  // namespace qsr
