#include "cli/hostfile_launcher.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/launch_plan.h"
#include "cli/process_group.h"
#include "cli/route_address.h"
#include "cli/run_commands.h"
#include "cli/run_dir.h"
#include "cli/status_format.h"
#include "client/ops_client.h"

namespace qsr {
namespace {

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

// What RunHostfile starts, once every flag is checked.
struct HostfilePlan {
  std::vector<HostSlots> hosts;
  int total = 0;          // workers over every host
  int port = 0;           // the coordinator's --port (0: the OS chooses)
  std::string advertise;  // the address the nodes reach the coordinator on
  std::string bin_dir, run_id, run_dir;
};

absl::StatusOr<HostfilePlan> PlanHostfileRun(const FlagParser& flags) {
  const std::string file = flags.Get("hostfile");
  if (!std::ifstream(file)) return Bad("--hostfile " + file + ": cannot read it");
  absl::StatusOr<std::vector<HostSlots>> hosts = ParseHostfile(ReadFileOrEmpty(file), file);
  if (!hosts.ok()) return Bad(std::string(hosts.status().message()));
  HostfilePlan plan;
  plan.hosts = *std::move(hosts);
  for (const HostSlots& h : plan.hosts) plan.total += h.slots;
  if (absl::Status s = CheckRecipeFor(flags, plan.total); !s.ok())
    return Bad(std::string(s.message()));
  if (!flags.positional().empty())
    return Bad("unexpected argument \"" + flags.positional()[0] + "\"");
  const int64_t port = flags.Int("port");
  if (port < 0 || port > 65535)
    return Bad(absl::StrCat("--port is ", port, "; allowed: 0 (the OS chooses) to 65535"));
  if (flags.Duration("progress") <= absl::ZeroDuration())
    return Bad("--progress is " + absl::FormatDuration(flags.Duration("progress")) +
               "; allowed: a duration above 0 (5s)");
  plan.port = static_cast<int>(port);
  plan.advertise = flags.Get("coordinator-addr");
  if (plan.advertise.empty()) {
    absl::StatusOr<std::string> a = LocalAddressTowards(
        absl::StrCat(plan.hosts[0].host, ":", plan.port > 0 ? plan.port : 7070));
    if (!a.ok()) return Bad("--hostfile: " + std::string(a.status().message()));
    plan.advertise = *a;
  }
  plan.bin_dir = BinDirFrom(flags);
  plan.run_id = RunIdFrom(flags);
  plan.run_dir = RunDirFrom(flags, plan.run_id);
  std::error_code ec;
  std::filesystem::create_directories(plan.run_dir + "/logs", ec);
  if (ec) return Bad("cannot create run directory " + plan.run_dir + ": " + ec.message());
  plan.run_dir = std::filesystem::absolute(plan.run_dir).lexically_normal().string();
  return plan;
}

// Starts the coordinator; its bound port once it serves, or the exit code.
std::variant<std::string, int> StartCoordinator(const FlagParser& flags, const HostfilePlan& plan,
                                                ProcessGroup& group,
                                                volatile std::sig_atomic_t* signal) {
  const std::string port_file = plan.run_dir + "/coordinator.port";
  std::error_code ec;
  std::filesystem::remove(port_file, ec);
  ProcessGroup::Output out;
  out.echo = false;
  out.log_path = plan.run_dir + "/logs/coordinator.log";
  const CoordinatorLaunch launch{
      plan.bin_dir, absl::StrCat(flags.Get("listen-host"), ":", plan.port),
      plan.run_dir, plan.run_id,
      port_file,    plan.total};
  if (absl::StatusOr<int> c = group.Spawn("coord", CoordinatorArgv(flags, launch), out); !c.ok()) {
    return QsrRunUsageError(std::string(c.status().message()));
  }
  absl::StatusOr<std::string> bound =
      WaitForPortFile(group, 0, port_file, absl::Seconds(30), signal);
  if (!bound.ok()) {
    group.TerminateAll(absl::Seconds(5));
    std::cerr << "qsr-run: the coordinator did not start; its log " << out.log_path << ":\n"
              << ReadFileOrEmpty(out.log_path);
    return 1;
  }
  return *bound;
}

// Follows the nodes until each has ended, or the coordinator has; nullopt when a signal came.
std::optional<int> FollowNodes(ProcessGroup& group, const std::string& bound,
                               absl::Duration progress_every, volatile std::sig_atomic_t* signal) {
  absl::StatusOr<std::unique_ptr<OpsClient>> client =
      OpsClient::Create("127.0.0.1:" + bound, ClientSecurity());
  absl::Time next_progress = absl::Now() + progress_every;
  while (true) {
    group.Pump(absl::Milliseconds(200));
    if (*signal) {
      std::cout << "qsr-run: signal " << *signal << ": stopping the nodes and the coordinator\n";
      group.TerminateAll(absl::Seconds(30));
      return 128 + *signal;
    }
    bool nodes_done = true;
    for (int i = 1; i < group.size(); ++i) nodes_done = nodes_done && group.ExitCode(i).has_value();
    if (nodes_done) return std::nullopt;
    if (group.ExitCode(0)) {
      // The coordinator ended the run: the nodes end with it (bounded by their grace).
      const absl::Time deadline = absl::Now() + absl::Seconds(60);
      while (!group.AllExited() && absl::Now() < deadline) group.Pump(absl::Milliseconds(200));
      return std::nullopt;
    }
    if (client.ok() && absl::Now() >= next_progress) {
      next_progress = absl::Now() + progress_every;
      absl::StatusOr<v1::GetStatusReply> s = (*client)->GetStatus(absl::Seconds(2));
      if (s.ok() && s->state() == "RUNNING") {
        std::cout << "qsr-run: " << ProgressLine(*s) << std::endl;
      }
    }
  }
}

// After every node has ended: true when each exited 0.
bool EndNodes(ProcessGroup& group) {
  // After a finished run the coordinator ends on its own; after a failed node it would wait for
  // workers that are not coming.
  bool all_ok = true;
  for (int i = 1; i < group.size(); ++i) all_ok = all_ok && group.ExitCode(i) == 0;
  const absl::Time deadline = absl::Now() + (all_ok ? absl::Seconds(60) : absl::ZeroDuration());
  while (!group.ExitCode(0) && absl::Now() < deadline) group.Pump(absl::Milliseconds(200));
  group.TerminateAll(absl::Seconds(10));
  bool node_failed = false;
  for (int i = 1; i < group.size(); ++i) {
    if (group.ExitCode(i) != 0) {
      node_failed = true;
      std::cout << "qsr-run: " << group.Name(i) << " exited with code " << *group.ExitCode(i)
                << "; its output: " << group.LogPath(i) << "\n";
    }
  }
  return !node_failed;
}

}  // namespace

int RunHostfile(const FlagParser& flags, volatile std::sig_atomic_t* signal) {
  absl::StatusOr<HostfilePlan> plan = PlanHostfileRun(flags);
  if (!plan.ok()) return QsrRunUsageError(std::string(plan.status().message()));
  ProcessGroup group;
  std::variant<std::string, int> bound = StartCoordinator(flags, *plan, group, signal);
  if (const int* code = std::get_if<int>(&bound)) return *code;
  const std::string address = plan->advertise + ":" + std::get<std::string>(bound);
  std::cout << absl::StrFormat("qsr-run: coordinator at %s, %d workers on %d hosts, run dir %s\n",
                               address, plan->total, plan->hosts.size(), plan->run_dir);
  std::error_code ec;
  const std::string cwd = std::filesystem::current_path(ec).string();
  for (size_t k = 0; k < plan->hosts.size(); ++k) {
    const HostSlots& h = plan->hosts[k];
    ProcessGroup::Output out;
    out.log_path = absl::StrCat(plan->run_dir, "/logs/node", k, ".out");
    const std::vector<std::string> node = HostfileNodeArgv(
        flags, plan->bin_dir, address, plan->run_dir, static_cast<int>(k), h.slots);
    if (absl::StatusOr<int> c =
            group.Spawn(absl::StrCat("node", k, " ", h.host),
                        RemoteCommand(flags.Get("launcher"), h.host, cwd, node), out);
        !c.ok()) {
      group.TerminateAll(absl::Seconds(10));
      return QsrRunUsageError(std::string(c.status().message()));
    }
  }
  const absl::Duration progress_every = flags.Duration("progress");
  if (std::optional<int> code =
          FollowNodes(group, std::get<std::string>(bound), progress_every, signal)) {
    return *code;
  }
  const bool nodes_ok = EndNodes(group);
  const RunSummary summary = EchoRunSummary(plan->run_dir);
  if (!nodes_ok || summary.state != "FINISHED") {
    std::cout << "qsr-run: the run FAILED; logs in " << plan->run_dir << "/logs\n";
    return 1;
  }
  std::cout << absl::StrFormat(
      "qsr-run: done in %.1f s: test accuracy %.4f, %d averaging rounds; logs in %s/logs\n",
      summary.elapsed_s, summary.test_acc, static_cast<int64_t>(summary.rounds), plan->run_dir);
  return 0;
}

}  // namespace qsr
