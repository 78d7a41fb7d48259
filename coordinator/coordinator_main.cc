// qsr-coordinator: owns one training run. See --help.
#include <unistd.h>

#include <csignal>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/connection_security.h"
#include "common/flags.h"
#include "common/recipe.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/run_recovery.h"
#include "glog/logging.h"
#include "logging/log_prefix.h"
#include "serving/port_file.h"

namespace {

volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

std::string DefaultRunId() {
  return absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()) +
         absl::StrFormat("-%d", ::getpid());
}

int Fail(const std::string& message) {
  std::cerr << "qsr-coordinator: " << message << "\n";
  return 2;
}

void DefineFlags(qsr::FlagParser& flags) {
  flags.Add("recipe", "", "recipe YAML file (required)");
  flags.Add("listen", "127.0.0.1:7070", "address to serve gRPC on; port 0 lets the OS choose");
  flags.Add("run-dir", "",
            "where rounds.jsonl, evals.jsonl and the recipe go (default runs/RUN_ID)");
  flags.Add("run-id", "", "name of the run (default: date-time-pid)");
  flags.Add("state-dir", "",
            "keep the run's journal here: a coordinator restarted with the same state dir "
            "continues the run (and its run directory defaults to this one)");
  flags.Add("port-file", "", "write the bound port to this file once serving");
  flags.AddDuration("rendezvous-timeout", absl::Seconds(300),
                    "how long workers may wait for each other at a barrier or rendezvous");
  flags.AddInt("plan-batch-steps", 32,
               "hand out consecutive round plans until they cover this many steps");
  flags.AddDuration("linger", absl::ZeroDuration(),
                    "keep serving status this long after the run ends");
  flags.AddDuration("heartbeat-interval", absl::Seconds(1), "how often workers send heartbeats");
  flags.AddDuration("heartbeat-timeout", absl::Seconds(10),
                    "a worker silent this long is declared failed and the group re-forms "
                    "without it");
  flags.AddDuration("survivor-wait", absl::Seconds(10),
                    "after a failure, how long the re-forming group waits for the surviving "
                    "workers to join again");
  flags.AddDuration("replacement-timeout", absl::Seconds(300),
                    "below min_workers, how long to wait for replacements before the run fails");
  flags.AddDuration("round-timeout", absl::Seconds(300),
                    "a worker reaching the round barrier this long after the first is a "
                    "straggler: it is declared failed");
  flags.AddInt("metrics-port", -1,
               "serve Prometheus metrics over HTTP at /metrics on this port of the --listen "
               "host (-1: off; 0: the OS chooses, logged)");
  // Names from before durations carried their unit; they keep working with a warning.
  flags.AddDeprecatedAlias("rendezvous-timeout-s", "rendezvous-timeout", "s");
  flags.AddDeprecatedAlias("linger-s", "linger", "s");
  flags.AddDeprecatedAlias("heartbeat-interval-ms", "heartbeat-interval", "ms");
  flags.AddDeprecatedAlias("heartbeat-timeout-ms", "heartbeat-timeout", "ms");
  flags.AddDeprecatedAlias("regroup-timeout-ms", "survivor-wait", "ms");
  flags.AddDeprecatedAlias("replacement-timeout-s", "replacement-timeout", "s");
  flags.AddDeprecatedAlias("round-timeout-s", "round-timeout", "s");
  flags.Add("tls-cert", "", "PEM certificate to serve TLS with (with --tls-key)");
  flags.Add("tls-key", "", "PEM private key of --tls-cert");
  flags.Add("tls-client-ca", "",
            "PEM CA bundle: require every client to present a certificate it signed (mutual TLS)");
  flags.Add("token-file", "",
            "file holding the run's shared token, required to join and to change the run "
            "(default: $QSR_TOKEN; none: open)");
  flags.AddBool("token-protect-reads", "require the token for status reads too");
  flags.AcceptRecipeOverrides();
}

// The timing and serving flags into `options` (and --linger); an error names the flag.
absl::Status ParseServing(const qsr::FlagParser& flags, qsr::CoordinatorServer::Options* options,
                          absl::Duration* linger) {
  // Liveness and recovery deadlines: each must be positive.
  struct Deadline {
    const char* flag;
    absl::Duration* out;
  };
  qsr::RunController::Options& run = options->run;
  for (const Deadline& d : {Deadline{"rendezvous-timeout", &run.rendezvous_timeout},
                            Deadline{"heartbeat-interval", &run.heartbeat_interval},
                            Deadline{"heartbeat-timeout", &run.heartbeat_timeout},
                            Deadline{"survivor-wait", &run.regroup_timeout},
                            Deadline{"replacement-timeout", &run.replacement_timeout},
                            Deadline{"round-timeout", &run.round_timeout}}) {
    *d.out = flags.Duration(d.flag);
    if (*d.out <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("--", d.flag, " is ",
                                                     absl::FormatDuration(*d.out),
                                                     "; allowed: a duration above 0 (10s, 500ms)"));
    }
  }
  if (run.heartbeat_timeout <= run.heartbeat_interval) {
    return absl::InvalidArgumentError(
        "--heartbeat-timeout must be longer than --heartbeat-interval");
  }
  *linger = flags.Duration("linger");
  if (*linger < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--linger must not be negative (0s: stop at once)");
  }
  const int64_t batch_steps = flags.Int("plan-batch-steps");
  if (batch_steps < 1) return absl::InvalidArgumentError("--plan-batch-steps must be >= 1");
  const int64_t metrics_port = flags.Int("metrics-port");
  if (metrics_port < -1 || metrics_port > 65535) {
    return absl::InvalidArgumentError(
        "--metrics-port must be -1 (off), 0 (the OS chooses) or a port up to 65535");
  }
  run.plan_batch_steps = batch_steps;
  options->metrics_port = static_cast<int>(metrics_port);
  options->listen = flags.Get("listen");
  return absl::OkStatus();
}

// TLS and the run token; an error names the flag or file.
absl::Status ParseSecurity(const qsr::FlagParser& flags, qsr::ServerSecurity* security) {
  security->tls_cert = flags.Get("tls-cert");
  security->tls_key = flags.Get("tls-key");
  security->tls_client_ca = flags.Get("tls-client-ca");
  absl::StatusOr<std::string> token = qsr::LoadToken(flags.Get("token-file"));
  if (!token.ok()) return token.status();
  security->token = std::move(*token);
  security->token_protect_reads = flags.GetBool("token-protect-reads");
  if (security->token_protect_reads && security->token.empty()) {
    return absl::InvalidArgumentError(
        "--token-protect-reads needs a token (--token-file or $QSR_TOKEN)");
  }
  return absl::OkStatus();
}

void LogServing(const qsr::Recipe& recipe, const qsr::CoordinatorServer::Options& options,
                const qsr::CoordinatorServer& server) {
  const qsr::ServerSecurity& security = options.security;
  LOG(INFO) << "run " << options.run.run_id << ": " << recipe.model << " / " << recipe.optimizer
            << ", " << recipe.workers << " workers, " << recipe.TotalSteps() << " steps; run dir "
            << options.run_dir;
  LOG(INFO) << "listening on " << server.address()
            << (security.UsesTls() ? (security.tls_client_ca.empty() ? " (TLS)" : " (mutual TLS)")
                                   : " (insecure)")
            << (security.token.empty()         ? ""
                : security.token_protect_reads ? ", token required for every call"
                                               : ", token required to change the run");
}

}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  qsr::InitLogging(argv[0]);
  // The distribution's Abseil is built without NDEBUG, so every absl::Mutex acquisition (ours
  // and gRPC's) would run the deadlock detector's lock-graph bookkeeping: about a tenth of the
  // coordinator's CPU at 1,024 workers. Tests keep the detector on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  qsr::FlagParser flags("qsr-coordinator",
                        "qsr-coordinator --recipe FILE [--listen HOST:PORT] [--run-dir DIR] "
                        "[--KEY=VALUE ...]\n"
                        "Owns one training run: the recipe, the round plan (QSR), membership, "
                        "rendezvous, reports and status.");
  DefineFlags(flags);
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (flags.Get("recipe").empty()) return Fail("--recipe FILE is required (see --help)");

  absl::StatusOr<qsr::Recipe> recipe =
      qsr::LoadRecipeWithOverrides(flags.Get("recipe"), flags.recipe_overrides());
  if (!recipe.ok()) return Fail(std::string(recipe.status().message()));
  qsr::CoordinatorServer::Options options;
  absl::Duration linger;
  if (absl::Status s = ParseServing(flags, &options, &linger); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  absl::StatusOr<qsr::RunStart> start = qsr::ChooseRunStart(
      *std::move(recipe),
      qsr::RunStartFlags{flags.Get("state-dir"), flags.Get("run-id"), flags.Get("run-dir")},
      DefaultRunId());
  if (!start.ok()) return Fail(std::string(start.status().message()));
  for (const std::string& warning : start->warnings) LOG(WARNING) << warning;
  if (!start->resumed_from.empty()) {
    LOG(INFO) << "resuming from " << start->resumed_from << " at step "
              << start->recipe.resume_from_step;
  }
  options.run.run_id = start->run_id;
  options.run_dir = start->run_dir;
  options.journal = std::move(start->journal);
  options.recovered = std::move(start->recovered);
  if (absl::Status s = ParseSecurity(flags, &options.security); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  qsr::SetLogContext(options.run.run_id, "coord");

  absl::StatusOr<std::unique_ptr<qsr::CoordinatorServer>> server =
      qsr::CoordinatorServer::Start(start->recipe, options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  LogServing(start->recipe, options, **server);
  if (absl::Status s = qsr::WritePortFile(flags.Get("port-file"), (*server)->port()); !s.ok()) {
    (*server)->Shutdown();
    return Fail(std::string(s.message()));
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  while (g_signal == 0 && !(*server)->AwaitDone(absl::Now() + absl::Milliseconds(200))) {
  }
  if (g_signal != 0) {
    LOG(WARNING) << "signal " << g_signal << ": shutting down";
    (*server)->Shutdown();
    return 1;
  }
  bool failed = (*server)->controller().Failed();
  absl::Time linger_until = absl::Now() + linger;
  while (g_signal == 0 && absl::Now() < linger_until) absl::SleepFor(absl::Milliseconds(100));
  (*server)->Shutdown();
  return failed ? 1 : 0;
}
