#include "cli/node_launcher.h"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/process_group.h"
#include "cli/status_format.h"
#include "client/ops_client.h"
#include "common/backoff.h"

namespace qsr {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(3);

// The last `n` lines of a log, indented, for a message about the process that wrote it.
std::string Tail(const std::string& path, int n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (size_t i = lines.size() > static_cast<size_t>(n) ? lines.size() - n : 0; i < lines.size();
       ++i) {
    absl::StrAppend(&out, "    ", lines[i], "\n");
  }
  return out;
}

bool Ended(const std::string& state) {
  return state == "FINISHED" || state == "FAILED" || state == "STOPPED";
}

std::vector<std::string> AgentArgv(const NodeLauncher::Options& o, const std::string& port_file) {
  std::vector<std::string> argv = {o.bin_dir + "/qsr-agent",
                                   "--coordinator",
                                   o.coordinator,
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--port-file",
                                   port_file};
  argv.insert(argv.end(), o.agent_flags.begin(), o.agent_flags.end());
  return argv;
}

std::vector<std::string> WorkerArgv(const NodeLauncher::Options& o, const std::string& agent_port,
                                    int i) {
  std::vector<std::string> argv = {o.bin_dir + "/qsr-worker",
                                   "--coordinator",
                                   "127.0.0.1:" + agent_port,
                                   "--host",
                                   o.host,
                                   "--worker-id",
                                   absl::StrCat(o.node_name, "-w", i),
                                   "--device",
                                   o.devices[i],
                                   "--threads",
                                   absl::StrCat(o.threads),
                                   "--heap",
                                   o.heap};
  if (!o.data_dir.empty()) argv.insert(argv.end(), {"--data-dir", o.data_dir});
  if (!o.model_path.empty()) argv.insert(argv.end(), {"--model-path", o.model_path});
  return argv;
}

}  // namespace

// What Run knows about the node's workers; index i + 1 is worker i (child 0 is the agent).
struct NodeLauncher::Supervision {
  explicit Supervision(int workers)
      : handled(workers + 1, false), final_state(workers + 1, false), restart_at(workers + 1) {}
  std::vector<bool> handled;      // its last exit has been decided on
  std::vector<bool> final_state;  // finished or given up on: not restarted again
  std::vector<std::optional<absl::Time>> restart_at;
  bool any_finished = false;
  bool any_given_up = false;
  std::string last_state;  // the run's state, as last read

  bool AllFinal() const {
    for (size_t i = 1; i < final_state.size(); ++i) {
      if (!final_state[i]) return false;
    }
    return true;
  }
};

std::string NodeLauncher::Prefix() const {
  return absl::StrCat("qsr-run: node ", options_.node_name, ": ");
}

std::optional<int> NodeLauncher::AwaitRun(OpsClient& client, volatile std::sig_atomic_t* signal,
                                          v1::GetStatusReply* status) {
  const Options& o = options_;
  // Nothing starts before the coordinator answers: a wrong address fails here, at once.
  const BackoffPolicy poll{absl::Milliseconds(100), absl::Milliseconds(500), 0};
  const absl::Time wait_until = absl::Now() + o.coordinator_wait;
  absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
  for (int attempt = 0; !s.ok() && absl::Now() < wait_until && !*signal; ++attempt) {
    absl::SleepFor(std::min(BackoffDelay(poll, attempt), wait_until - absl::Now()));
    s = client.GetStatus(
        std::min(kCallTimeout, std::max(absl::Milliseconds(100), wait_until - absl::Now())));
  }
  if (*signal) return 128 + *signal;
  if (!s.ok()) {
    std::cerr << Prefix() << "--coordinator " << o.coordinator << " did not answer within "
              << absl::FormatDuration(o.coordinator_wait)
              << " (--coordinator-wait): " << s.status().message() << "; nothing was started\n";
    return 2;
  }
  if (Ended(s->state())) {
    std::cerr << Prefix() << "the run " << s->run_id() << " at " << o.coordinator << " is "
              << s->state() << "; nothing was started\n";
    return 2;
  }
  *status = *std::move(s);
  return std::nullopt;
}

std::optional<int> NodeLauncher::StartProcesses(ProcessGroup& group,
                                                volatile std::sig_atomic_t* signal,
                                                const std::string& run_id) {
  const Options& o = options_;
  std::error_code ec;
  std::filesystem::create_directories(o.log_dir, ec);
  if (ec) {
    std::cerr << Prefix() << "cannot create the log folder " << o.log_dir << ": " << ec.message()
              << "\n";
    return 2;
  }
  auto output = [&](const std::string& name) {
    ProcessGroup::Output out;
    out.echo = false;
    out.log_path = o.log_dir + "/" + name + ".log";
    return out;
  };
  const std::string agent_port_file = o.log_dir + "/agent.port";
  std::filesystem::remove(agent_port_file, ec);
  if (absl::StatusOr<int> a = group.Spawn("agent", AgentArgv(o, agent_port_file), output("agent"));
      !a.ok()) {
    std::cerr << Prefix() << a.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<std::string> agent_port =
      WaitForPortFile(group, 0, agent_port_file, absl::Seconds(30), signal);
  if (!agent_port.ok()) {
    group.TerminateAll(absl::Seconds(5));
    std::cerr << Prefix() << "qsr-agent did not start; its log " << group.LogPath(0) << ":\n"
              << Tail(group.LogPath(0), 10);
    return *signal ? 128 + *signal : 1;
  }
  const int workers = static_cast<int>(o.devices.size());
  for (int i = 0; i < workers; ++i) {
    const std::string name = absl::StrCat("w", i);
    if (absl::StatusOr<int> c = group.Spawn(name, WorkerArgv(o, *agent_port, i), output(name));
        !c.ok()) {
      group.TerminateAll(absl::Seconds(5));
      std::cerr << Prefix() << c.status().message() << "\n";
      return 1;
    }
  }
  std::cout << Prefix()
            << absl::StrFormat(
                   "run %s: agent on 127.0.0.1:%s, %d workers (%s) on host %s; logs in %s", run_id,
                   *agent_port, workers, absl::StrJoin(o.devices, ","), o.host, o.log_dir)
            << std::endl;
  return std::nullopt;
}

void NodeLauncher::OnWorkerExit(int i, ProcessGroup& group, OpsClient& client,
                                RestartPolicy& policy, Supervision& sup) {
  sup.handled[i] = true;
  const int code = *group.ExitCode(i);
  RestartPolicy::Run run = RestartPolicy::Run::kOver;
  if (code != 0 && !sup.any_finished) {
    absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
    run = !s.ok()             ? RestartPolicy::Run::kUnreachable
          : Ended(s->state()) ? RestartPolicy::Run::kOver
                              : RestartPolicy::Run::kGoingOn;
    if (s.ok()) sup.last_state = s->state();
  }
  RestartPolicy::Decision d = policy.OnExit(i - 1, code, run, absl::Now());
  switch (d.action) {
    case RestartPolicy::Action::kFinished:
      sup.any_finished = true;
      sup.final_state[i] = true;
      break;
    case RestartPolicy::Action::kRestart:
      sup.restart_at[i] = d.restart_at;
      std::cout << Prefix() << group.Name(i) << " (pid " << group.Pid(i) << ") "
                << DescribeExit(code) << "; " << d.reason << "; log " << group.LogPath(i)
                << std::endl;
      break;
    case RestartPolicy::Action::kGiveUp:
      sup.final_state[i] = true;
      sup.any_given_up = true;
      std::cout << Prefix() << group.Name(i) << " " << DescribeExit(code)
                << "; not restarted: " << d.reason << "; the last lines of " << group.LogPath(i)
                << ":\n"
                << Tail(group.LogPath(i), 8) << std::flush;
      break;
  }
}

void NodeLauncher::Supervise(ProcessGroup& group, OpsClient& client, RestartPolicy& policy,
                             Supervision& sup) {
  for (int i = 1; i < group.size(); ++i) {
    if (sup.restart_at[i] && absl::Now() >= *sup.restart_at[i]) {
      sup.restart_at[i].reset();
      sup.handled[i] = false;
      if (absl::Status s = group.Restart(i); !s.ok()) {
        std::cout << Prefix() << group.Name(i) << ": cannot restart: " << s.message() << std::endl;
        sup.final_state[i] = true;
        sup.any_given_up = true;
      }
      continue;
    }
    if (!sup.handled[i] && group.ExitCode(i)) OnWorkerExit(i, group, client, policy, sup);
  }
}

int NodeLauncher::Run(volatile std::sig_atomic_t* signal) {
  const Options& o = options_;
  absl::StatusOr<std::unique_ptr<OpsClient>> made = OpsClient::Create(o.coordinator, o.security);
  if (!made.ok()) {
    std::cerr << Prefix() << made.status().message() << "\n";
    return 2;
  }
  OpsClient& client = **made;
  v1::GetStatusReply status;
  if (std::optional<int> code = AwaitRun(client, signal, &status)) return *code;
  ProcessGroup group;
  if (std::optional<int> code = StartProcesses(group, signal, status.run_id())) return *code;

  const int workers = static_cast<int>(o.devices.size());
  RestartPolicy policy(o.restart);
  Supervision sup(workers);
  sup.last_state = status.state();
  const absl::Time t0 = absl::Now();
  absl::Time next_progress = absl::Now() + o.progress_every;
  while (!sup.AllFinal()) {
    group.Pump(absl::Milliseconds(200));
    if (*signal) {
      const int sig = *signal;
      std::cout << Prefix() << "signal " << sig << ": stopping the workers and the agent (grace "
                << absl::FormatDuration(o.grace) << ")" << std::endl;
      group.TerminateAll(o.grace);
      return 128 + sig;
    }
    Supervise(group, client, policy, sup);
    if (sup.AllFinal()) break;
    if (o.progress_every > absl::ZeroDuration() && absl::Now() >= next_progress) {
      next_progress = absl::Now() + o.progress_every;
      absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
      if (s.ok() && s->state() == "RUNNING") {
        const double eta =
            EstimateEtaSeconds(*s, status.step(), absl::ToDoubleSeconds(absl::Now() - t0));
        std::cout << Prefix() << WatchLine(*s, eta) << std::endl;
      }
    }
  }
  // The workers are done; the agent has nothing left to relay.
  group.TerminateAll(o.grace);
  absl::StatusOr<v1::GetStatusReply> end = client.GetStatus(kCallTimeout);
  if (end.ok()) sup.last_state = end->state();
  const bool ok = !sup.any_given_up && sup.any_finished;
  std::cout << Prefix()
            << absl::StrFormat(
                   "%s: %d workers, %d restarts; the run is %s; logs in %s (agent.log, %s)",
                   ok ? "done" : "FAILED", workers, policy.restarts(),
                   end.ok() ? sup.last_state : "over (the coordinator has exited)", o.log_dir,
                   workers == 1 ? "w0.log" : absl::StrCat("w0.log ... w", workers - 1, ".log"))
            << std::endl;
  return ok ? 0 : 1;
}

}  // namespace qsr
