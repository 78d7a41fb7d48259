// qsr-worker: trains in a run owned by a qsr-coordinator. See --help.
#include <unistd.h>

#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/coordinator_client.h"
#include "common/flags.h"
#include "common/snapshot_interval.h"
#include "glog/logging.h"
#include "logging/log_prefix.h"
#include "worker/comm/communicator_factory.h"
#include "worker/heap_policy.h"
#include "worker/trainer.h"

namespace {

void DefineFlags(qsr::FlagParser& flags) {
  flags.Add("coordinator", "127.0.0.1:7070", "the coordinator's HOST:PORT");
  flags.Add("device", "cpu", "cpu (cuda:N needs a CUDA build)");
  flags.Add("data-dir", "",
            "where the dataset lives on this machine (overrides the recipe; "
            "QSR_DATA_DIR works too)");
  flags.Add("model-path", "",
            "model torchscript: the TorchScript file on this machine (overrides the recipe's "
            "model_path)");
  flags.Add("host", "127.0.0.1", "address peers reach this worker on for the collectives");
  flags.AddInt("threads", 0, "intra-op threads (0 = all cores)");
  flags.Add("worker-id", "", "unique name of this worker (default HOST:PID)");
  flags.Add("checkpoint-dir", "", "where checkpoints go (default runs/RUN_ID/checkpoints)");
  flags.Add("snapshot-dir", "",
            "rank 0 writes the averaged model here (snap-STEP.pt and snapshots.jsonl with a "
            "clock that leaves out the writes and evaluations), for time-to-accuracy curves");
  flags.AddDouble("snapshot-every", 0.0625,
                  "with --snapshot-dir: epochs between snapshots, or every sync if syncs are "
                  "rarer");
  flags.AddDuration("connect-timeout", absl::Seconds(300),
                    "how long to wait at start for the coordinator and the other workers");
  flags.AddDuration("rejoin-timeout", absl::Seconds(600),
                    "after a failure, how long this worker keeps asking to rejoin the re-formed "
                    "group");
  // Names from before durations carried their unit; they keep working with a warning.
  flags.AddDeprecatedAlias("connect-timeout-s", "connect-timeout", "s");
  flags.AddDeprecatedAlias("regroup-timeout-s", "rejoin-timeout", "s");
  flags.Add("heap", "keep",
            "keep: memory a step frees stays in the process for the next step (no page faults "
            "on reuse; the resident size stays at its peak); system: glibc's defaults");
  qsr::AddClientSecurityFlags(flags);
}

}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  qsr::InitLogging(argv[0]);
  qsr::FlagParser flags("qsr-worker",
                        "qsr-worker --coordinator HOST:PORT [--device cpu] [--data-dir DIR]\n"
                        "Joins a run and trains; everything else comes from the coordinator.");
  DefineFlags(flags);
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (absl::Status s = qsr::ApplyHeapPolicy(flags.Get("heap")); !s.ok()) {
    std::cerr << "qsr-worker: --heap: " << s.message() << "\n";
    return absl::IsInvalidArgument(s) ? 2 : 1;
  }
  const int64_t threads = flags.Int("threads");
  const absl::Duration connect = flags.Duration("connect-timeout");
  const absl::Duration rejoin = flags.Duration("rejoin-timeout");
  if (threads < 0 || connect <= absl::ZeroDuration() || rejoin <= absl::ZeroDuration()) {
    std::cerr << "qsr-worker: --threads must be >= 0, --connect-timeout and --rejoin-timeout "
                 "durations above 0 (300s, 10m)\n";
    return 2;
  }
  if (absl::Status s = qsr::CheckDevice(flags.Get("device")); !s.ok()) {
    std::cerr << "qsr-worker: " << s.message() << "\n";
    return 2;
  }
  char hostname[256] = {0};
  ::gethostname(hostname, sizeof(hostname) - 1);
  qsr::TrainerOptions options;
  options.worker_id = flags.Get("worker-id").empty() ? absl::StrCat(hostname, ":", ::getpid())
                                                     : flags.Get("worker-id");
  options.host = flags.Get("host");
  options.device = flags.Get("device");
  options.data_dir = flags.Get("data-dir");
  options.model_path = flags.Get("model-path");
  options.checkpoint_dir = flags.Get("checkpoint-dir");
  options.snapshot_dir = flags.Get("snapshot-dir");
  options.snapshot_every = flags.Double("snapshot-every");
  if (absl::Status interval = qsr::CheckSnapshotInterval(options.snapshot_every); !interval.ok()) {
    std::cerr << "qsr-worker: " << interval.message() << "\n";
    return 2;
  }
  options.threads = static_cast<int>(threads);
  options.connect_timeout = connect;
  options.regroup_timeout = rejoin;

  absl::StatusOr<qsr::ClientSecurity> security = qsr::ClientSecurityFromFlags(flags);
  if (!security.ok()) {
    std::cerr << "qsr-worker: " << security.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<qsr::CoordinatorClient>> client =
      qsr::NewGrpcCoordinatorClient(flags.Get("coordinator"), *security);
  if (!client.ok()) {
    std::cerr << "qsr-worker: " << client.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<qsr::TrainerResult> result = qsr::RunTrainer(client->get(), options);
  if (!result.ok()) {
    std::cerr << "qsr-worker: " << result.status().message() << " (coordinator "
              << flags.Get("coordinator") << ")\n";
    return 1;
  }
  LOG(INFO) << "rank " << result->rank << " done: " << result->rounds << " rounds, "
            << result->steps << " steps, test_acc " << result->test_acc << ", "
            << result->bytes_sent << " bytes sent, " << result->regroups << " regroups";
  return 0;
}
