// qsr-run: a coordinator and N workers on this machine, as one command. See --help.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/process_group.h"
#include "cli/status_format.h"
#include "cli/worker_devices.h"
#include "common/flags.h"
#include "common/heap_policy.h"
#include "common/recipe.h"
#include "coordinator/coordinator_client.h"

namespace {

volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }

int Fail(const std::string& message) {
  std::cerr << "qsr-run: " << message << "\n";
  return 2;
}

std::string SelfDir() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : self.parent_path().string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Extracts a number field from a flat JSON object; -1 when absent.
double JsonNumber(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::atof(json.c_str() + at + key.size() + 3);
}

}  // namespace

int main(int argc, char** argv) {
  qsr::FlagParser flags(
      "qsr-run",
      "qsr-run --workers N --recipe FILE [--device cpu|cuda|cuda:0,cuda:1] [--run-dir DIR] "
      "[--KEY=VALUE ...]\n"
      "Starts a coordinator and N workers on this machine, shows progress, and ends with the test "
      "accuracy, the number of averaging rounds and the bytes each worker sent.");
  flags.Add("recipe", "", "recipe YAML file (required)");
  flags.Add("run-dir", "", "run directory (default runs/RUN_ID)");
  flags.Add("run-id", "", "name of the run (default: date-time-pid)");
  flags.Add("data-dir", "", "dataset location, passed to every worker");
  flags.Add("threads", "0", "intra-op threads per worker (0 = cores / workers)");
  flags.Add("device", "cpu",
            "cpu; cuda (worker i on cuda:i); or one cuda:N per worker, comma-separated");
  flags.Add("progress-s", "5", "seconds between progress lines");
  flags.Add("heap", "keep",
            "the workers' heap: keep (memory a step frees is reused) or system (glibc's "
            "defaults); passed to every worker");
  flags.Add("bin-dir", "", "where qsr-coordinator and qsr-worker are (default: beside qsr-run)");
  // Security, passed through: the coordinator's side, then the workers' (and qsr-run's own).
  flags.Add("tls-cert", "", "the coordinator's PEM certificate (turns on TLS; with --tls-key)");
  flags.Add("tls-key", "", "the coordinator's PEM private key");
  flags.Add("tls-client-ca", "", "the coordinator requires client certificates signed by this CA");
  flags.Add("tls-ca", "", "the CA the workers verify the coordinator's certificate against");
  flags.Add("tls-client-cert", "", "the workers' PEM certificate, for mutual TLS");
  flags.Add("tls-client-key", "", "the workers' PEM private key, for mutual TLS");
  flags.Add("tls-server-name", "", "name the workers verify the coordinator's certificate as");
  flags.Add("token-file", "", "file with the run's shared token (default: $QSR_TOKEN)");
  flags.AddBool("token-protect-reads", "the coordinator requires the token for status reads too");
  flags.AcceptRecipeOverrides();
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (flags.Get("recipe").empty()) return Fail("--recipe FILE is required (see --help)");
  if (!flags.positional().empty())
    return Fail("unexpected argument \"" + flags.positional()[0] + "\"");

  // Validate here too, so a bad recipe fails before anything starts.
  absl::StatusOr<qsr::Recipe> recipe =
      qsr::LoadRecipeWithOverrides(flags.Get("recipe"), flags.recipe_overrides());
  if (!recipe.ok()) return Fail(std::string(recipe.status().message()));
  absl::StatusOr<int64_t> threads = flags.GetInt("threads");
  absl::StatusOr<double> progress_s = flags.GetDouble("progress-s");
  if (!threads.ok() || *threads < 0) return Fail("--threads must be an integer >= 0");
  if (!progress_s.ok() || *progress_s <= 0) return Fail("--progress-s must be a number > 0");
  if (absl::StatusOr<qsr::HeapPolicy> heap = qsr::ParseHeapPolicy(flags.Get("heap")); !heap.ok())
    return Fail("--heap: " + std::string(heap.status().message()));
  const int workers = static_cast<int>(recipe->workers);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t per_worker = *threads > 0 ? *threads : std::max(1, cores / workers);
  absl::StatusOr<std::vector<std::string>> devices = qsr::WorkerDevices(
      flags.Get("device"), workers, qsr::VisibleGpus(std::getenv("CUDA_VISIBLE_DEVICES")));
  if (!devices.ok()) return Fail(std::string(devices.status().message()));

  // What the workers and qsr-run itself use to reach the coordinator.
  qsr::ClientSecurity security;
  security.tls_ca = flags.Get("tls-ca");
  security.tls_cert = flags.Get("tls-client-cert");
  security.tls_key = flags.Get("tls-client-key");
  security.tls_server_name = flags.Get("tls-server-name");
  security.tls = !flags.Get("tls-cert").empty();
  absl::StatusOr<std::string> token = qsr::LoadToken(flags.Get("token-file"));
  if (!token.ok()) return Fail(std::string(token.status().message()));
  security.token = *token;
  if (absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> c =
          qsr::MakeChannelCredentials(security);
      !c.ok()) {
    return Fail(std::string(c.status().message()));
  }
  std::vector<std::string> coord_security, worker_security;
  for (const char* name : {"tls-cert", "tls-key", "tls-client-ca", "token-file"}) {
    if (!flags.Get(name).empty()) {
      coord_security.insert(coord_security.end(), {absl::StrCat("--", name), flags.Get(name)});
    }
  }
  if (flags.GetBool("token-protect-reads")) coord_security.push_back("--token-protect-reads");
  if (security.tls) worker_security.push_back("--tls");
  for (const auto& [from, to] :
       std::vector<std::pair<const char*, const char*>>{{"tls-ca", "--tls-ca"},
                                                        {"tls-client-cert", "--tls-cert"},
                                                        {"tls-client-key", "--tls-key"},
                                                        {"tls-server-name", "--tls-server-name"},
                                                        {"token-file", "--token-file"}}) {
    if (!flags.Get(from).empty())
      worker_security.insert(worker_security.end(), {to, flags.Get(from)});
  }

  const std::string bin = flags.Get("bin-dir").empty() ? SelfDir() : flags.Get("bin-dir");
  const std::string run_id =
      flags.Get("run-id").empty()
          ? absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()) +
                absl::StrFormat("-%d", ::getpid())
          : flags.Get("run-id");
  const std::string run_dir =
      flags.Get("run-dir").empty() ? "runs/" + run_id : flags.Get("run-dir");
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) return Fail("cannot create run directory " + run_dir + ": " + ec.message());
  const std::string port_file = run_dir + "/coordinator.port";
  std::filesystem::remove(port_file, ec);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  qsr::ProcessGroup group;
  std::vector<std::string> coord = {bin + "/qsr-coordinator",
                                    "--recipe",
                                    flags.Get("recipe"),
                                    "--listen",
                                    "127.0.0.1:0",
                                    "--run-dir",
                                    run_dir,
                                    "--run-id",
                                    run_id,
                                    "--port-file",
                                    port_file};
  coord.insert(coord.end(), coord_security.begin(), coord_security.end());
  for (const auto& [k, v] : flags.recipe_overrides())
    coord.push_back(absl::StrCat("--", k, "=", v));
  if (absl::StatusOr<int> c = group.Spawn("coord", coord); !c.ok()) {
    return Fail(std::string(c.status().message()));
  }

  // The coordinator writes its OS-chosen port once it serves.
  std::string port;
  const absl::Time port_deadline = absl::Now() + absl::Seconds(30);
  while (port.empty()) {
    group.Pump(absl::Milliseconds(50));
    port = ReadFile(port_file);
    while (!port.empty() && (port.back() == '\n')) port.pop_back();
    if (group.ExitCode(0) || g_signal || absl::Now() > port_deadline) {
      group.TerminateAll(absl::Seconds(5));
      return Fail("the coordinator did not start (see its output above)");
    }
  }
  const std::string address = "127.0.0.1:" + port;
  std::cout << absl::StrFormat(
      "qsr-run: coordinator at %s, %d workers x %d threads on %s, run dir %s\n", address, workers,
      per_worker, flags.Get("device"), run_dir);
  for (int i = 0; i < workers; ++i) {
    std::vector<std::string> w = {bin + "/qsr-worker",
                                  "--coordinator",
                                  address,
                                  "--threads",
                                  absl::StrCat(per_worker),
                                  "--worker-id",
                                  absl::StrCat(run_id, "-w", i),
                                  "--device",
                                  (*devices)[i],
                                  "--heap",
                                  flags.Get("heap")};
    if (!flags.Get("data-dir").empty()) {
      w.push_back("--data-dir");
      w.push_back(flags.Get("data-dir"));
    }
    w.insert(w.end(), worker_security.begin(), worker_security.end());
    if (absl::StatusOr<int> c = group.Spawn(absl::StrCat("w", i), w); !c.ok()) {
      group.TerminateAll(absl::Seconds(5));
      return Fail(std::string(c.status().message()));
    }
  }

  absl::StatusOr<std::unique_ptr<qsr::CoordinatorClient>> made =
      qsr::NewGrpcCoordinatorClient(address, security);
  if (!made.ok()) {
    group.TerminateAll(absl::Seconds(5));
    return Fail(std::string(made.status().message()));
  }
  qsr::CoordinatorClient* client = made->get();
  absl::Time next_progress = absl::Now() + absl::Seconds(*progress_s);
  bool failed = false;
  std::vector<bool> reported(group.size(), false);
  while (!group.AllExited()) {
    group.Pump(absl::Milliseconds(200));
    if (g_signal) {
      std::cout << "qsr-run: interrupted, stopping the run\n";
      group.TerminateAll(absl::Seconds(10));
      return 130;
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
      next_progress = absl::Now() + absl::Seconds(*progress_s);
      absl::StatusOr<qsr::v1::GetStatusReply> s = client->GetStatus(absl::Now() + absl::Seconds(2));
      if (s.ok() && s->state() == "RUNNING") {
        std::cout << "qsr-run: " << qsr::ProgressLine(*s) << std::endl;
      }
    }
  }
  const std::string summary = ReadFile(run_dir + "/summary.json");
  if (!summary.empty()) std::cout << "qsr-run: summary " << summary;
  if (failed || summary.find("\"state\":\"FINISHED\"") == std::string::npos) {
    std::cout << "qsr-run: the run FAILED; see the output above and " << run_dir << "\n";
    return 1;
  }
  std::cout << absl::StrFormat(
      "qsr-run: done in %.1f s: test accuracy %.4f, %d averaging rounds, %s sent per worker; "
      "logs in %s\n",
      JsonNumber(summary, "elapsed_s"), JsonNumber(summary, "test_acc"),
      static_cast<int64_t>(JsonNumber(summary, "rounds")),
      qsr::HumanBytes(static_cast<int64_t>(JsonNumber(summary, "bytes_per_worker"))), run_dir);
  return 0;
}
