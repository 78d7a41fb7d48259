#include "cli/node_launcher.h"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/process_group.h"
#include "cli/status_format.h"
#include "client/ops_client.h"

namespace qsr {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(3);

std::string ReadTrimmed(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

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

}  // namespace

int NodeLauncher::Run(volatile std::sig_atomic_t* signal) {
  const Options& o = options_;
  const std::string prefix = absl::StrCat("qsr-run: node ", o.node_name, ": ");
  absl::StatusOr<std::unique_ptr<OpsClient>> made = OpsClient::Create(o.coordinator, o.security);
  if (!made.ok()) {
    std::cerr << prefix << made.status().message() << "\n";
    return 2;
  }
  OpsClient& client = **made;

  // Nothing starts before the coordinator answers: a wrong address fails here, at once.
  const absl::Time wait_until = absl::Now() + o.coordinator_wait;
  absl::StatusOr<v1::GetStatusReply> status = client.GetStatus(kCallTimeout);
  while (!status.ok() && absl::Now() < wait_until && !*signal) {
    absl::SleepFor(std::min(absl::Milliseconds(500), wait_until - absl::Now()));
    status = client.GetStatus(
        std::min(kCallTimeout, std::max(absl::Milliseconds(100), wait_until - absl::Now())));
  }
  if (*signal) return 128 + *signal;
  if (!status.ok()) {
    std::cerr << prefix << "--coordinator " << o.coordinator << " did not answer within "
              << absl::FormatDuration(o.coordinator_wait)
              << " (--coordinator-wait-s): " << status.status().message()
              << "; nothing was started\n";
    return 2;
  }
  if (Ended(status->state())) {
    std::cerr << prefix << "the run " << status->run_id() << " at " << o.coordinator << " is "
              << status->state() << "; nothing was started\n";
    return 2;
  }

  std::error_code ec;
  std::filesystem::create_directories(o.log_dir, ec);
  if (ec) {
    std::cerr << prefix << "cannot create the log folder " << o.log_dir << ": " << ec.message()
              << "\n";
    return 2;
  }
  ProcessGroup group;
  auto output = [&](const std::string& name) {
    ProcessGroup::Output out;
    out.echo = false;
    out.log_path = o.log_dir + "/" + name + ".log";
    return out;
  };
  const std::string agent_port_file = o.log_dir + "/agent.port";
  std::filesystem::remove(agent_port_file, ec);
  std::vector<std::string> agent = {o.bin_dir + "/qsr-agent",
                                    "--coordinator",
                                    o.coordinator,
                                    "--listen",
                                    "127.0.0.1:0",
                                    "--port-file",
                                    agent_port_file};
  agent.insert(agent.end(), o.agent_flags.begin(), o.agent_flags.end());
  if (absl::StatusOr<int> a = group.Spawn("agent", agent, output("agent")); !a.ok()) {
    std::cerr << prefix << a.status().message() << "\n";
    return 1;
  }
  std::string agent_port;
  const absl::Time agent_deadline = absl::Now() + absl::Seconds(30);
  while ((agent_port = ReadTrimmed(agent_port_file)).empty()) {
    group.Pump(absl::Milliseconds(50));
    if (group.ExitCode(0) || *signal || absl::Now() > agent_deadline) {
      group.TerminateAll(absl::Seconds(5));
      std::cerr << prefix << "qsr-agent did not start; its log " << group.LogPath(0) << ":\n"
                << Tail(group.LogPath(0), 10);
      return *signal ? 128 + *signal : 1;
    }
  }
  const int workers = static_cast<int>(o.devices.size());
  for (int i = 0; i < workers; ++i) {
    std::vector<std::string> w = {o.bin_dir + "/qsr-worker",
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
    if (!o.data_dir.empty()) w.insert(w.end(), {"--data-dir", o.data_dir});
    if (!o.model_path.empty()) w.insert(w.end(), {"--model-path", o.model_path});
    if (absl::StatusOr<int> c = group.Spawn(absl::StrCat("w", i), w, output(absl::StrCat("w", i)));
        !c.ok()) {
      group.TerminateAll(absl::Seconds(5));
      std::cerr << prefix << c.status().message() << "\n";
      return 1;
    }
  }
  std::cout << prefix
            << absl::StrFormat(
                   "run %s: agent on 127.0.0.1:%s, %d workers (%s) on host %s; logs in %s",
                   status->run_id(), agent_port, workers, absl::StrJoin(o.devices, ","), o.host,
                   o.log_dir)
            << std::endl;

  RestartPolicy policy(o.restart);
  // Per worker (child index i + 1): handled exit, pending restart time, final outcome.
  std::vector<bool> handled(workers + 1, false), final_state(workers + 1, false);
  std::vector<std::optional<absl::Time>> restart_at(workers + 1);
  bool any_finished = false, any_given_up = false;
  std::string last_state = status->state();
  const absl::Time t0 = absl::Now();
  const int64_t step0 = status->step();
  absl::Time next_progress = absl::Now() + o.progress_every;
  while (true) {
    group.Pump(absl::Milliseconds(200));
    if (*signal) {
      const int sig = *signal;
      std::cout << prefix << "signal " << sig << ": stopping the workers and the agent (grace "
                << absl::FormatDuration(o.grace) << ")" << std::endl;
      group.TerminateAll(o.grace);
      return 128 + sig;
    }
    for (int i = 1; i <= workers; ++i) {
      if (restart_at[i] && absl::Now() >= *restart_at[i]) {
        restart_at[i].reset();
        handled[i] = false;
        if (absl::Status s = group.Restart(i); !s.ok()) {
          std::cout << prefix << group.Name(i) << ": cannot restart: " << s.message() << std::endl;
          final_state[i] = true;
          any_given_up = true;
        }
        continue;
      }
      if (handled[i] || !group.ExitCode(i)) continue;
      handled[i] = true;
      const int code = *group.ExitCode(i);
      RestartPolicy::Run run = RestartPolicy::Run::kOver;
      if (code != 0 && !any_finished) {
        absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
        run = !s.ok()             ? RestartPolicy::Run::kUnreachable
              : Ended(s->state()) ? RestartPolicy::Run::kOver
                                  : RestartPolicy::Run::kGoingOn;
        if (s.ok()) last_state = s->state();
      }
      RestartPolicy::Decision d = policy.OnExit(i - 1, code, run, absl::Now());
      switch (d.action) {
        case RestartPolicy::Action::kFinished:
          any_finished = true;
          final_state[i] = true;
          break;
        case RestartPolicy::Action::kRestart:
          restart_at[i] = d.restart_at;
          std::cout << prefix << group.Name(i) << " (pid " << group.Pid(i) << ") "
                    << DescribeExit(code) << "; " << d.reason << "; log " << group.LogPath(i)
                    << std::endl;
          break;
        case RestartPolicy::Action::kGiveUp:
          final_state[i] = true;
          any_given_up = true;
          std::cout << prefix << group.Name(i) << " " << DescribeExit(code)
                    << "; not restarted: " << d.reason << "; the last lines of " << group.LogPath(i)
                    << ":\n"
                    << Tail(group.LogPath(i), 8) << std::flush;
          break;
      }
    }
    bool all_final = true;
    for (int i = 1; i <= workers; ++i) all_final = all_final && final_state[i];
    if (all_final) break;
    if (o.progress_every > absl::ZeroDuration() && absl::Now() >= next_progress) {
      next_progress = absl::Now() + o.progress_every;
      absl::StatusOr<v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
      if (s.ok() && s->state() == "RUNNING") {
        const double eta = EstimateEtaSeconds(*s, step0, absl::ToDoubleSeconds(absl::Now() - t0));
        std::cout << prefix << WatchLine(*s, eta) << std::endl;
      }
    }
  }
  // The workers are done; the agent has nothing left to relay.
  group.TerminateAll(o.grace);
  absl::StatusOr<v1::GetStatusReply> end = client.GetStatus(kCallTimeout);
  if (end.ok()) last_state = end->state();
  const bool ok = !any_given_up && any_finished;
  std::cout << prefix
            << absl::StrFormat(
                   "%s: %d workers, %d restarts; the run is %s; logs in %s (agent.log, %s)",
                   ok ? "done" : "FAILED", workers, policy.restarts(),
                   end.ok() ? last_state : "over (the coordinator has exited)", o.log_dir,
                   workers == 1 ? "w0.log" : absl::StrCat("w0.log ... w", workers - 1, ".log"))
            << std::endl;
  return ok ? 0 : 1;
}

}  // namespace qsr
