// qsrctl: operate a qsr run — query it, watch it, stop it, plot it — or preview the round plan of
// a recipe. See --help.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/plot.h"
#include "cli/status_format.h"
#include "client/connection_security.h"
#include "client/ops_client.h"
#include "common/flags.h"
#include "common/recipe.h"
#include "common/round_planner.h"

namespace {

constexpr char kUsage[] =
    "qsrctl [--coordinator HOST:PORT] COMMAND [flags]\n"
    "Commands:\n"
    "  status [--json]                 the live run: state, step, epoch, lr, H, round, workers\n"
    "  workers [--json]                rank, host, device, state, last heartbeat, samples/s\n"
    "  rounds [--json] [--from N]      completed rounds, one per line\n"
    "  watch [--interval 2s] [--timeout 10m]\n"
    "                                  a live progress bar with the ETA, lr and H; ends with the\n"
    "                                  run (exit 0 FINISHED, 1 FAILED, 3 --timeout passed)\n"
    "  stop [--reason TEXT] [--wait] [--timeout 10m]\n"
    "                                  end the run after the rounds in flight; workers leave\n"
    "                                  cleanly; --wait until it has ended\n"
    "  plot --out FILE.png|FILE.svg [--run-dir DIR]\n"
    "                                  lr, H, train loss and test accuracy against the step, from\n"
    "                                  a run directory or (without --run-dir) the live run\n"
    "  plan --recipe FILE [--KEY=VALUE ...] [--json]\n"
    "                                  the round plan a recipe produces (no coordinator needed)\n"
    "  export --checkpoint DIR --out FILE\n"
    "                                  a checkpoint's weights as a PyTorch state dict (runs\n"
    "                                  qsr-export, installed beside qsrctl)";

// Every call to the coordinator is bounded by this; listing rounds may take longer.
constexpr absl::Duration kCallTimeout = absl::Seconds(10);
constexpr absl::Duration kListTimeout = absl::Seconds(30);
constexpr absl::Duration kPlotTimeout = absl::Seconds(60);

int Fail(const std::string& message) {
  std::cerr << "qsrctl: " << message << "\n";
  return 2;
}

int Fail(const absl::Status& status) { return Fail(std::string(status.message())); }

std::string TimeoutError(absl::Duration timeout) {
  return "--timeout is " + absl::FormatDuration(timeout) + "; allowed: 0s (none) or more";
}

bool Ended(const qsr::v1::GetStatusReply& s) {
  return s.state() == "FINISHED" || s.state() == "FAILED";
}

int Plan(const qsr::FlagParser& flags) {
  if (flags.Get("recipe").empty()) return Fail("plan needs --recipe FILE");
  absl::StatusOr<qsr::Recipe> recipe =
      qsr::LoadRecipeWithOverrides(flags.Get("recipe"), flags.recipe_overrides());
  if (!recipe.ok()) return Fail(recipe.status());
  qsr::RoundPlanner planner(*recipe);
  std::vector<qsr::Round> rounds = planner.Plan();
  qsr::PlanSummary summary = qsr::RoundPlanner::Summarize(rounds);
  const bool json = flags.GetBool("json");
  if (!json) {
    // after: what follows the round's averaging (e: evaluation, c: checkpoint).
    std::cout << absl::StrFormat("%8s %10s %12s %8s %6s\n", "round", "step", "lr", "h", "after");
  }
  for (const qsr::Round& r : rounds) {
    if (json) {
      std::cout << qsr::RoundJson(r) << "\n";
    } else {
      const std::string after =
          absl::StrCat(r.eval_after ? "e" : "", r.checkpoint_after ? "c" : "");
      std::cout << absl::StrFormat("%8d %10d %12.6g %8d %6s\n", r.index, r.start_step, r.lr, r.h,
                                   after.empty() ? "-" : after);
    }
  }
  if (json) {
    std::cout << qsr::PlanSummaryJson(summary, recipe->alpha) << "\n";
  } else {
    std::cout << absl::StrFormat(
        "\n%d rounds over %d steps; mean H %.2f, max H %d; %.2f%% of steps end in a sync; "
        "alpha %.6g%s\n",
        summary.rounds, summary.total_steps, summary.mean_h, summary.max_h,
        100.0 * summary.sync_share, recipe->alpha,
        recipe->sync_budget > 0 ? " (chosen for the sync budget)" : "");
  }
  return 0;
}

int Status(qsr::OpsClient& client, const qsr::FlagParser& flags) {
  absl::StatusOr<qsr::v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
  if (!s.ok()) return Fail(s.status());
  std::cout << (flags.GetBool("json") ? qsr::StatusJson(*s) + "\n" : qsr::StatusTable(*s));
  return 0;
}

int Workers(qsr::OpsClient& client, const qsr::FlagParser& flags) {
  absl::StatusOr<qsr::v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
  if (!s.ok()) return Fail(s.status());
  if (flags.GetBool("json")) {
    for (const qsr::v1::WorkerInfo& w : s->worker_info()) std::cout << qsr::WorkerJson(w) << "\n";
  } else {
    std::cout << qsr::WorkersTable(*s);
  }
  return 0;
}

int Rounds(qsr::OpsClient& client, const qsr::FlagParser& flags) {
  const int64_t from = flags.Int("from");
  if (from < 0) return Fail(absl::StrCat("--from is ", from, "; allowed: a round >= 0"));
  qsr::v1::ListRoundsRequest request;
  request.set_from_round(from);
  absl::StatusOr<qsr::v1::ListRoundsReply> reply = client.ListRounds(request, kListTimeout);
  if (!reply.ok()) return Fail(reply.status());
  const bool json = flags.GetBool("json");
  if (!json) {
    std::cout << absl::StrFormat("%8s %10s %12s %6s %8s %12s %9s %10s\n", "round", "step", "lr",
                                 "h", "workers", "bytes", "seconds", "loss");
  }
  for (const qsr::v1::RoundRecord& r : reply->rounds()) {
    if (json) {
      std::cout << qsr::RoundRecordJson(r) << "\n";
    } else {
      std::cout << absl::StrFormat("%8d %10d %12.6g %6d %8d %12d %9.3f %10.4f\n", r.round(),
                                   r.step(), r.lr(), r.h(), r.workers(), r.bytes(), r.seconds(),
                                   r.train_loss());
    }
  }
  return 0;
}

// Polls the status until the run ends, drawing a progress line: in place on a terminal, one line
// per poll otherwise. Every wait is bounded: a call by kCallTimeout, the whole watch by
// --timeout (when > 0), a lost coordinator by max(10 s, 3 polls).
int Watch(qsr::OpsClient& client, const qsr::FlagParser& flags) {
  const absl::Duration interval = flags.Duration("interval");
  const absl::Duration timeout = flags.Duration("timeout");
  if (interval <= absl::ZeroDuration()) {
    return Fail("--interval is " + absl::FormatDuration(interval) +
                "; allowed: a duration above 0 (2s, 500ms)");
  }
  if (timeout < absl::ZeroDuration()) return Fail(TimeoutError(timeout));
  const absl::Time deadline =
      timeout > absl::ZeroDuration() ? absl::Now() + timeout : absl::InfiniteFuture();
  const absl::Duration lost_after = std::max(absl::Seconds(10), 3 * interval);
  const bool tty = ::isatty(STDOUT_FILENO) == 1;

  absl::StatusOr<qsr::v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
  if (!s.ok()) return Fail(s.status());
  // The step rate is measured from the first poll; before any progress, from the run's start.
  const absl::Time t0 = absl::Now();
  const int64_t step0 = s->step();
  absl::Time last_ok = t0;
  while (true) {
    double eta = qsr::EstimateEtaSeconds(*s, step0, absl::ToDoubleSeconds(absl::Now() - t0));
    if (Ended(*s)) eta = 0;
    const std::string line = qsr::WatchLine(*s, eta);
    std::cout << (tty ? "\r" + line + "\033[K" : line + "\n") << std::flush;
    if (Ended(*s)) {
      if (tty) std::cout << "\n";
      std::cout << absl::StrFormat(
          "run %s %s%s after %s: step %d/%d, %d rounds", s->run_id(), s->state(),
          s->message().empty() ? "" : " (" + s->message() + ")", qsr::HumanDuration(s->elapsed_s()),
          s->step(), s->total_steps(), s->round());
      if (s->test_acc() >= 0) std::cout << absl::StrFormat(", test accuracy %.4f", s->test_acc());
      std::cout << "\n";
      return s->state() == "FINISHED" ? 0 : 1;
    }
    if (absl::Now() >= deadline) {
      if (tty) std::cout << "\n";
      std::cout << "qsrctl: watch: --timeout passed; the run goes on\n";
      return 3;
    }
    absl::SleepFor(std::min(interval, deadline - absl::Now()));
    absl::StatusOr<qsr::v1::GetStatusReply> next = client.GetStatus(kCallTimeout);
    if (next.ok()) {
      s = std::move(next);
      last_ok = absl::Now();
    } else if (absl::Now() - last_ok > lost_after) {
      if (tty) std::cout << "\n";
      return Fail(absl::StrFormat(
          "%s; lost it after step %d/%d (a coordinator exits when its run ends: give it "
          "--linger to keep its status readable)",
          next.status().message(), s->step(), s->total_steps()));
    }
  }
}

int Stop(qsr::OpsClient& client, const qsr::FlagParser& flags) {
  const absl::Duration timeout = flags.Duration("timeout");
  if (timeout < absl::ZeroDuration()) return Fail(TimeoutError(timeout));
  qsr::v1::StopRequest request;
  request.set_reason(flags.Get("reason").empty() ? "qsrctl stop" : flags.Get("reason"));
  absl::StatusOr<qsr::v1::StopReply> reply = client.Stop(request, kCallTimeout);
  if (!reply.ok()) return Fail(reply.status());
  if (reply->outcome().code() != qsr::v1::Outcome::OK) {
    std::cout << "qsrctl: nothing to stop: " << reply->outcome().message() << "\n";
    return reply->outcome().code() == qsr::v1::Outcome::RUN_FAILED ? 1 : 0;
  }
  std::cout << absl::StrFormat(
      "stop requested: the run ends at step %d, after the rounds already handed out; workers "
      "leave at their next barrier\n",
      reply->stop_step());
  if (!flags.GetBool("wait")) return 0;

  const absl::Time deadline =
      absl::Now() + (timeout > absl::ZeroDuration() ? timeout : absl::Minutes(10));
  while (true) {
    absl::StatusOr<qsr::v1::GetStatusReply> s = client.GetStatus(kCallTimeout);
    if (!s.ok()) {
      if (absl::IsUnavailable(s.status())) {
        std::cout << "the coordinator at " << client.address()
                  << " has exited: the run has ended (its run directory's summary.json says "
                     "how)\n";
        return 0;
      }
      return Fail(s.status());
    }
    if (Ended(*s)) {
      std::cout << absl::StrFormat("run %s %s%s at step %d/%d\n", s->run_id(), s->state(),
                                   s->message().empty() ? "" : " (" + s->message() + ")", s->step(),
                                   s->total_steps());
      return s->state() == "FINISHED" ? 0 : 1;
    }
    if (absl::Now() >= deadline) {
      return Fail(absl::StrFormat(
          "coordinator at %s: the run is still %s at step %d after --timeout; workers still "
          "in it: %d",
          client.address(), s->state(), s->step(), s->workers()));
    }
    absl::SleepFor(std::min(absl::Milliseconds(500), deadline - absl::Now()));
  }
}

int Plot(qsr::OpsClient& client, const qsr::FlagParser& flags) {
  const std::string out = flags.Get("out");
  if (out.empty()) return Fail("plot needs --out FILE.png or --out FILE.svg");
  qsr::PlotData data;
  if (!flags.Get("run-dir").empty()) {
    absl::StatusOr<qsr::PlotData> read = qsr::ReadRunDir(flags.Get("run-dir"));
    if (!read.ok()) return Fail(read.status());
    data = std::move(*read);
  } else {
    absl::StatusOr<qsr::v1::GetStatusReply> status = client.GetStatus(kCallTimeout);
    if (!status.ok()) return Fail(status.status());
    absl::StatusOr<qsr::v1::ListRoundsReply> rounds =
        client.ListRounds(qsr::v1::ListRoundsRequest(), kListTimeout);
    if (!rounds.ok()) return Fail(rounds.status());
    absl::StatusOr<qsr::v1::ListEvalsReply> evals = client.ListEvals(kCallTimeout);
    if (!evals.ok()) return Fail(evals.status());
    data = qsr::PlotDataFrom(*status, *rounds, *evals);
  }
  if (absl::Status s = qsr::RenderPlot(data, out, kPlotTimeout); !s.ok()) {
    const std::string source =
        flags.Get("run-dir").empty() ? "the run at " + client.address() : flags.Get("run-dir");
    return Fail(absl::StrFormat("plot of %s: %s", source, s.message()));
  }
  std::cout << absl::StrFormat("wrote %s: %d rounds, %d evaluations\n", out, data.rounds.size(),
                               data.evals.size());
  return 0;
}

// Runs qsr-export from qsrctl's own folder (qsrctl does not link LibTorch); its exit code is
// ours.
int Export(const qsr::FlagParser& flags) {
  if (flags.Get("checkpoint").empty() || flags.Get("out").empty()) {
    return Fail("export needs --checkpoint DIR and --out FILE");
  }
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return Fail("export: cannot find qsrctl's own folder (/proc/self/exe)");
  self[n] = '\0';
  std::string bin(self);
  bin = bin.substr(0, bin.rfind('/') + 1) + "qsr-export";
  if (::access(bin.c_str(), X_OK) != 0) {
    return Fail("export needs " + bin +
                " (built with the worker, installed beside qsrctl); it is missing");
  }
  const std::string checkpoint = "--checkpoint=" + flags.Get("checkpoint");
  const std::string out = "--out=" + flags.Get("out");
  const char* argv[] = {bin.c_str(), checkpoint.c_str(), out.c_str(), nullptr};
  ::execv(bin.c_str(), const_cast<char* const*>(argv));
  return Fail("export: cannot run " + bin + ": " + std::strerror(errno));
}

}  // namespace

int main(int argc, char** argv) {
  qsr::FlagParser flags("qsrctl", kUsage);
  flags.Add("coordinator", "127.0.0.1:7070", "the coordinator's HOST:PORT");
  flags.AddBool("json", "machine-readable output (JSON; one object per line for lists)");
  flags.Add("recipe", "", "plan: the recipe YAML file");
  flags.AddInt("from", 0, "rounds: first round to list");
  flags.AddDuration("interval", absl::Seconds(2), "watch: time between polls");
  flags.AddDuration("timeout", absl::ZeroDuration(),
                    "watch: give up after this long (0s: when the run ends); stop --wait: the "
                    "longest wait (0s: 10m)");
  flags.AddDeprecatedAlias("interval-s", "interval", "s");
  flags.AddDeprecatedAlias("timeout-s", "timeout", "s");
  flags.AddBool("wait", "stop: wait until the run has ended");
  flags.Add("reason", "", "stop: why, for the coordinator's log");
  flags.Add("out", "", "plot: the picture to write, *.png or *.svg; export: the state dict file");
  flags.Add("run-dir", "", "plot: read this run directory instead of asking the coordinator");
  flags.Add("checkpoint", "", "export: a step=S checkpoint folder or a checkpoint directory");
  qsr::AddClientSecurityFlags(flags);
  flags.AcceptRecipeOverrides();
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (flags.positional().empty()) {
    std::cout << flags.Help();
    return 2;
  }
  const std::string command = flags.positional()[0];
  if (flags.positional().size() > 1) {
    return Fail("unexpected argument \"" + flags.positional()[1] + "\" (see --help)");
  }
  if (command == "plan") return Plan(flags);
  if (command == "export") return Export(flags);
  if (!flags.recipe_overrides().empty()) {
    return Fail("recipe keys (--" + flags.recipe_overrides()[0].first + ") only go with plan");
  }
  absl::StatusOr<qsr::ClientSecurity> security = qsr::ClientSecurityFromFlags(flags);
  if (!security.ok()) return Fail(security.status());
  absl::StatusOr<std::unique_ptr<qsr::OpsClient>> made =
      qsr::OpsClient::Create(flags.Get("coordinator"), *security);
  if (!made.ok()) return Fail(made.status());
  qsr::OpsClient& client = **made;
  if (command == "status") return Status(client, flags);
  if (command == "workers") return Workers(client, flags);
  if (command == "rounds") return Rounds(client, flags);
  if (command == "watch") return Watch(client, flags);
  if (command == "stop") return Stop(client, flags);
  if (command == "plot") return Plot(client, flags);
  return Fail("unknown command \"" + command +
              "\"; allowed: status, workers, rounds, watch, stop, plot, plan");
}
