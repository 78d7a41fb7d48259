#include "cli/local_run.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/process_group.h"
#include "cli/run_commands.h"
#include "cli/status_format.h"
#include "cli/worker_devices.h"
#include "client/connection_security.h"
#include "client/ops_client.h"
#include "common/recipe.h"
#include "common/snapshot_interval.h"
#include "worker/heap_policy.h"

namespace qsr {
namespace {

// What RunLocal starts, once every flag is checked.
struct LocalPlan {
  int workers = 0;
  int threads = 1;  // per worker
  std::vector<std::string> devices;
  ClientSecurity security;  // qsr-run's own status calls
  std::string bin_dir, run_id, run_dir;
};

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::StatusOr<LocalPlan> PlanLocalRun(const FlagParser& flags) {
  if (flags.Get("recipe").empty()) return Bad("--recipe FILE is required (see --help)");
  if (!flags.positional().empty())
    return Bad("unexpected argument \"" + flags.positional()[0] + "\"");
  // Validate here too, so a bad recipe fails before anything starts.
  absl::StatusOr<Recipe> recipe =
      LoadRecipeWithOverrides(flags.Get("recipe"), flags.recipe_overrides());
  if (!recipe.ok()) return Bad(std::string(recipe.status().message()));
  const int64_t threads = flags.Int("threads");
  if (threads < 0) return Bad("--threads must be an integer >= 0");
  if (flags.Duration("progress") <= absl::ZeroDuration())
    return Bad("--progress is " + absl::FormatDuration(flags.Duration("progress")) +
               "; allowed: a duration above 0 (5s)");
  if (absl::StatusOr<HeapPolicy> heap = ParseHeapPolicy(flags.Get("heap")); !heap.ok())
    return Bad("--heap: " + std::string(heap.status().message()));
  // The workers check it too, but only after the coordinator started: refuse it before.
  if (!flags.Get("snapshot-dir").empty()) {
    if (absl::Status interval = CheckSnapshotInterval(flags.Double("snapshot-every"));
        !interval.ok())
      return Bad(std::string(interval.message()));
  }
  LocalPlan plan;
  plan.workers = static_cast<int>(recipe->workers);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  plan.threads = static_cast<int>(threads > 0 ? threads : std::max(1, cores / plan.workers));
  absl::StatusOr<std::vector<std::string>> devices = WorkerDevices(
      flags.Get("device"), plan.workers, VisibleGpus(std::getenv("CUDA_VISIBLE_DEVICES")));
  if (!devices.ok()) return Bad(std::string(devices.status().message()));
  plan.devices = *devices;
  plan.security.tls_ca = flags.Get("tls-ca");
  plan.security.tls_cert = flags.Get("tls-client-cert");
  plan.security.tls_key = flags.Get("tls-client-key");
  plan.security.tls_server_name = flags.Get("tls-server-name");
  plan.security.tls = !flags.Get("tls-cert").empty();
  absl::StatusOr<std::string> token = LoadToken(flags.Get("token-file"));
  if (!token.ok()) return Bad(std::string(token.status().message()));
  plan.security.token = *token;
  if (auto c = MakeChannelCredentials(plan.security); !c.ok()) {
    return Bad(std::string(c.status().message()));
  }
  plan.bin_dir = BinDirFrom(flags);
  plan.run_id = RunIdFrom(flags);
  plan.run_dir = RunDirFrom(flags, plan.run_id);
  return plan;
}

// Starts the coordinator and, once it serves, the workers; the coordinator's address.
absl::StatusOr<std::string> StartRun(const FlagParser& flags, const LocalPlan& plan,
                                     ProcessGroup& group, volatile std::sig_atomic_t* signal) {
  const std::string port_file = plan.run_dir + "/coordinator.port";
  std::error_code ec;
  std::filesystem::remove(port_file, ec);
  CoordinatorLaunch launch{plan.bin_dir, "127.0.0.1:0", plan.run_dir, plan.run_id, port_file, 0};
  if (absl::StatusOr<int> c = group.Spawn("coord", CoordinatorArgv(flags, launch)); !c.ok()) {
    return c.status();
  }
  // The coordinator writes its OS-chosen port once it serves.
  absl::StatusOr<std::string> port =
      WaitForPortFile(group, 0, port_file, absl::Seconds(30), signal);
  if (!port.ok()) {
    group.TerminateAll(absl::Seconds(5));
    return absl::UnavailableError("the coordinator did not start (see its output above)");
  }
  const std::string address = "127.0.0.1:" + *port;
  std::cout << absl::StrFormat(
      "qsr-run: coordinator at %s, %d workers x %d threads on %s, run dir %s\n", address,
      plan.workers, plan.threads, flags.Get("device"), plan.run_dir);
  for (int i = 0; i < plan.workers; ++i) {
    std::vector<std::string> argv = LocalWorkerArgv(flags, plan.bin_dir, address, plan.run_id,
                                                    plan.threads, plan.devices[i], i);
    if (absl::StatusOr<int> c = group.Spawn(absl::StrCat("w", i), argv); !c.ok()) {
      group.TerminateAll(absl::Seconds(5));
      return c.status();
    }
  }
  return address;
}

// Follows the run until every child has exited; false when the coordinator failed, nullopt when
// interrupted.
std::optional<bool> FollowRun(ProcessGroup& group, OpsClient& client, absl::Duration progress_every,
                              volatile std::sig_atomic_t* signal) {
  absl::Time next_progress = absl::Now() + progress_every;
  bool failed = false;
  std::vector<bool> reported(group.size(), false);
  while (!group.AllExited()) {
    group.Pump(absl::Milliseconds(200));
    if (*signal) {
      std::cout << "qsr-run: interrupted, stopping the run\n";
      group.TerminateAll(absl::Seconds(10));
      return std::nullopt;
    }
    // A worker that dies does not end the run: the coordinator re-forms the group without it
    // (or fails the run when it cannot go on, and then exits). The coordinator's exit ends it.
    for (int i = 1; i < group.size(); ++i) {
      if (group.ExitCode(i).value_or(0) != 0 && !reported[i]) {
        reported[i] = true;
        std::cout << "qsr-run: " << group.Name(i) << " exited with code " << *group.ExitCode(i)
                  << "; the coordinator goes on without it if it can\n";
      }
    }
    if (group.ExitCode(0).has_value() && !group.AllExited()) {
      failed = failed || *group.ExitCode(0) != 0;
      group.TerminateAll(absl::Seconds(10));
    }
    if (!group.ExitCode(0) && absl::Now() >= next_progress) {
      next_progress = absl::Now() + progress_every;
      absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(absl::Seconds(2));
      if (s.ok() && s->state() == "RUNNING") {
        std::cout << "qsr-run: " << ProgressLine(*s) << std::endl;
      }
    }
  }
  return !failed;
}

}  // namespace

int RunLocal(const FlagParser& flags, volatile std::sig_atomic_t* signal) {
  absl::StatusOr<LocalPlan> plan = PlanLocalRun(flags);
  if (!plan.ok()) return QsrRunUsageError(std::string(plan.status().message()));
  std::error_code ec;
  std::filesystem::create_directories(plan->run_dir, ec);
  if (ec)
    return QsrRunUsageError("cannot create run directory " + plan->run_dir + ": " + ec.message());
  ProcessGroup group;
  absl::StatusOr<std::string> address = StartRun(flags, *plan, group, signal);
  if (!address.ok()) return QsrRunUsageError(std::string(address.status().message()));
  absl::StatusOr<std::unique_ptr<OpsClient>> client = OpsClient::Create(*address, plan->security);
  if (!client.ok()) {
    group.TerminateAll(absl::Seconds(5));
    return QsrRunUsageError(std::string(client.status().message()));
  }
  std::optional<bool> ok = FollowRun(group, **client, flags.Duration("progress"), signal);
  if (!ok) return 130;
  const RunSummary summary = EchoRunSummary(plan->run_dir);
  if (!*ok || summary.state != "FINISHED") {
    std::cout << "qsr-run: the run FAILED; see the output above and " << plan->run_dir << "\n";
    return 1;
  }
  std::cout << absl::StrFormat(
      "qsr-run: done in %.1f s: test accuracy %.4f, %d averaging rounds, %s sent per worker; "
      "logs in %s\n",
      summary.elapsed_s, summary.test_acc, static_cast<int64_t>(summary.rounds),
      HumanBytes(static_cast<int64_t>(summary.bytes_per_worker)), plan->run_dir);
  return 0;
}

}  // namespace qsr
