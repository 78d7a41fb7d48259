// qsr-coordinator: owns one training run. See --help.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/connection_security.h"
#include "common/checkpoint_manifest.h"
#include "common/flags.h"
#include "common/log_prefix.h"
#include "common/recipe.h"
#include "coordinator/coordinator_server.h"
#include "glog/logging.h"

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
  flags.Add("recipe", "", "recipe YAML file (required)");
  flags.Add("listen", "127.0.0.1:7070", "address to serve gRPC on; port 0 lets the OS choose");
  flags.Add("run-dir", "",
            "where rounds.jsonl, evals.jsonl and the recipe go (default runs/RUN_ID)");
  flags.Add("run-id", "", "name of the run (default: date-time-pid)");
  flags.Add("state-dir", "",
            "keep the run's journal here: a coordinator restarted with the same state dir "
            "continues the run (and its run directory defaults to this one)");
  flags.Add("port-file", "", "write the bound port to this file once serving");
  flags.Add("rendezvous-timeout-s", "300",
            "how long workers may wait for each other at a barrier or rendezvous");
  flags.Add("plan-batch-steps", "32",
            "hand out consecutive round plans until they cover this many steps");
  flags.Add("linger-s", "0", "keep serving status this long after the run ends");
  flags.Add("heartbeat-interval-ms", "1000", "how often workers send heartbeats");
  flags.Add("heartbeat-timeout-ms", "10000",
            "a worker silent this long is declared failed and the group re-forms without it");
  flags.Add("regroup-timeout-ms", "10000",
            "after a failure, how long to wait for the surviving workers to join again");
  flags.Add("replacement-timeout-s", "300",
            "below min_workers, how long to wait for replacements before the run fails");
  flags.Add("round-timeout-s", "300",
            "a worker reaching the round barrier this long after the first is a straggler: it "
            "is declared failed");
  flags.Add("metrics-port", "-1",
            "serve Prometheus metrics over HTTP at /metrics on this port of the --listen host "
            "(-1: off; 0: the OS chooses, logged)");
  flags.Add("tls-cert", "", "PEM certificate to serve TLS with (with --tls-key)");
  flags.Add("tls-key", "", "PEM private key of --tls-cert");
  flags.Add("tls-client-ca", "",
            "PEM CA bundle: require every client to present a certificate it signed (mutual TLS)");
  flags.Add("token-file", "",
            "file holding the run's shared token, required to join and to change the run "
            "(default: $QSR_TOKEN; none: open)");
  flags.AddBool("token-protect-reads", "require the token for status reads too");
  flags.AcceptRecipeOverrides();
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (flags.Get("recipe").empty()) return Fail("--recipe FILE is required (see --help)");

  absl::StatusOr<qsr::Recipe> recipe =
      qsr::LoadRecipeWithOverrides(flags.Get("recipe"), flags.recipe_overrides());
  if (!recipe.ok()) return Fail(std::string(recipe.status().message()));
  absl::StatusOr<int64_t> timeout_s = flags.GetInt("rendezvous-timeout-s");
  absl::StatusOr<int64_t> batch_steps = flags.GetInt("plan-batch-steps");
  absl::StatusOr<int64_t> linger_s = flags.GetInt("linger-s");
  absl::StatusOr<int64_t> metrics_port = flags.GetInt("metrics-port");
  for (const absl::Status& s :
       {timeout_s.status(), batch_steps.status(), linger_s.status(), metrics_port.status()}) {
    if (!s.ok()) return Fail(std::string(s.message()));
  }
  // Liveness and recovery deadlines: each must be positive.
  struct Deadline {
    const char* flag;
    absl::Duration unit;
    absl::Duration* out;
  };
  qsr::CoordinatorServer::Options options;
  for (const Deadline& d :
       {Deadline{"heartbeat-interval-ms", absl::Milliseconds(1), &options.run.heartbeat_interval},
        Deadline{"heartbeat-timeout-ms", absl::Milliseconds(1), &options.run.heartbeat_timeout},
        Deadline{"regroup-timeout-ms", absl::Milliseconds(1), &options.run.regroup_timeout},
        Deadline{"replacement-timeout-s", absl::Seconds(1), &options.run.replacement_timeout},
        Deadline{"round-timeout-s", absl::Seconds(1), &options.run.round_timeout}}) {
    absl::StatusOr<int64_t> v = flags.GetInt(d.flag);
    if (!v.ok()) return Fail(std::string(v.status().message()));
    if (*v < 1) return Fail(std::string("--") + d.flag + " must be >= 1");
    *d.out = *v * d.unit;
  }
  if (options.run.heartbeat_timeout <= options.run.heartbeat_interval) {
    return Fail("--heartbeat-timeout-ms must be larger than --heartbeat-interval-ms");
  }
  if (*timeout_s < 1 || *batch_steps < 1 || *linger_s < 0) {
    return Fail("--rendezvous-timeout-s and --plan-batch-steps must be >= 1, --linger-s >= 0");
  }
  if (*metrics_port < -1 || *metrics_port > 65535) {
    return Fail("--metrics-port must be -1 (off), 0 (the OS chooses) or a port up to 65535");
  }

  options.listen = flags.Get("listen");
  options.run.run_id = flags.Get("run-id").empty() ? DefaultRunId() : flags.Get("run-id");
  if (!flags.Get("state-dir").empty()) {
    absl::StatusOr<std::unique_ptr<qsr::Journal>> journal =
        qsr::Journal::Open(flags.Get("state-dir"), &options.recovered);
    if (!journal.ok()) return Fail(std::string(journal.status().message()));
    options.journal = std::move(*journal);
    if (options.recovered.exists) {
      // Continue the journal's run: its name and its recipe, whatever the flags say now.
      options.run.run_id = options.recovered.run_id;
      absl::StatusOr<qsr::Recipe> journaled =
          qsr::ParseRecipeYaml(options.recovered.recipe_yaml, flags.Get("state-dir"));
      if (!journaled.ok()) return Fail(std::string(journaled.status().message()));
      if (absl::Status s = qsr::ResolveRecipe(*journaled); !s.ok()) {
        return Fail(std::string(s.message()));
      }
      if (qsr::RecipeChangedOnRestart(*recipe, *journaled)) {
        LOG(WARNING) << "--recipe differs from the recipe of the run in " << flags.Get("state-dir")
                     << "; continuing with the journal's";
      }
      *recipe = *journaled;
    }
  }
  options.run.rendezvous_timeout = absl::Seconds(*timeout_s);
  options.run.plan_batch_steps = *batch_steps;
  options.metrics_port = static_cast<int>(*metrics_port);
  options.security.tls_cert = flags.Get("tls-cert");
  options.security.tls_key = flags.Get("tls-key");
  options.security.tls_client_ca = flags.Get("tls-client-ca");
  absl::StatusOr<std::string> token = qsr::LoadToken(flags.Get("token-file"));
  if (!token.ok()) return Fail(std::string(token.status().message()));
  options.security.token = std::move(*token);
  options.security.token_protect_reads = flags.GetBool("token-protect-reads");
  if (options.security.token_protect_reads && options.security.token.empty()) {
    return Fail("--token-protect-reads needs a token (--token-file or $QSR_TOKEN)");
  }
  qsr::SetLogContext(options.run.run_id, "coord");
  options.run_dir = !flags.Get("run-dir").empty()     ? flags.Get("run-dir")
                    : !flags.Get("state-dir").empty() ? flags.Get("state-dir")
                                                      : "runs/" + options.run.run_id;

  // Checkpoints go under the run directory unless the recipe says otherwise; workers learn the
  // folder from the recipe (a worker's --checkpoint-dir still wins, for per-machine mounts).
  if (recipe->checkpoint_dir.empty()) recipe->checkpoint_dir = options.run_dir + "/checkpoints";
  // resume: the coordinator picks the checkpoint (it owns the plan); workers load its files.
  absl::StatusOr<qsr::ChosenCheckpoint> resumed = qsr::ApplyResume(*recipe, recipe->checkpoint_dir);
  if (!resumed.ok()) return Fail(std::string(resumed.status().message()));
  for (const std::string& skipped : resumed->skipped) {
    LOG(WARNING) << "resume: skipped a bad checkpoint: " << skipped;
  }
  if (!resumed->manifest_path.empty()) {
    LOG(INFO) << "resuming from " << resumed->manifest_path << " at step "
              << recipe->resume_from_step;
  }

  absl::StatusOr<std::unique_ptr<qsr::CoordinatorServer>> server =
      qsr::CoordinatorServer::Start(*recipe, options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  LOG(INFO) << "run " << options.run.run_id << ": " << recipe->model << " / " << recipe->optimizer
            << ", " << recipe->workers << " workers, " << recipe->TotalSteps() << " steps; run dir "
            << options.run_dir;
  LOG(INFO) << "listening on " << (*server)->address()
            << (options.security.UsesTls()
                    ? (options.security.tls_client_ca.empty() ? " (TLS)" : " (mutual TLS)")
                    : " (insecure)")
            << (options.security.token.empty()         ? ""
                : options.security.token_protect_reads ? ", token required for every call"
                                                       : ", token required to change the run");
  if (!flags.Get("port-file").empty()) {
    std::string tmp = flags.Get("port-file") + ".tmp";
    std::ofstream(tmp) << (*server)->port() << "\n";
    std::rename(tmp.c_str(), flags.Get("port-file").c_str());
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
  absl::Time linger_until = absl::Now() + absl::Seconds(*linger_s);
  while (g_signal == 0 && absl::Now() < linger_until) absl::SleepFor(absl::Milliseconds(100));
  (*server)->Shutdown();
  return failed ? 1 : 0;
}
