// qsr-run: a coordinator and N workers on this machine, as one command. See --help.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
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
#include "cli/launch_plan.h"
#include "cli/node_launcher.h"
#include "cli/process_group.h"
#include "cli/route_address.h"
#include "cli/status_format.h"
#include "cli/worker_devices.h"
#include "client/ops_client.h"
#include "common/flags.h"
#include "common/recipe.h"
#include "worker/heap_policy.h"

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

// qsr-run --coordinator HOST:PORT --nproc-per-node N: this node's agent and workers. Every
// check runs before anything starts; a bad value exits 2 naming it.
std::optional<int> NodeOptions(const qsr::FlagParser& flags, const std::string& coordinator,
                               const std::string& node_name, qsr::NodeLauncher::Options* out) {
  if (!flags.positional().empty())
    return Fail("unexpected argument \"" + flags.positional()[0] + "\"");
  std::string coord_host;
  int coord_port = 0;
  if (absl::Status s = qsr::SplitHostPort(coordinator, &coord_host, &coord_port); !s.ok())
    return Fail("--coordinator " + std::string(s.message()));
  absl::StatusOr<int64_t> nproc = flags.GetInt("nproc-per-node");
  if (!nproc.ok() || *nproc < 1 || *nproc > 1024) {
    return Fail("--nproc-per-node is \"" + flags.Get("nproc-per-node") +
                "\"; allowed: an integer from 1 to 1024 (workers on this node)");
  }
  absl::StatusOr<int64_t> threads = flags.GetInt("threads");
  absl::StatusOr<int64_t> max_restarts = flags.GetInt("max-restarts");
  absl::StatusOr<double> delay_s = flags.GetDouble("restart-delay-s");
  absl::StatusOr<double> wait_s = flags.GetDouble("coordinator-wait-s");
  absl::StatusOr<double> grace_s = flags.GetDouble("grace-s");
  absl::StatusOr<double> progress_s = flags.GetDouble("progress-s");
  if (!threads.ok() || *threads < 0) return Fail("--threads must be an integer >= 0");
  if (!max_restarts.ok() || *max_restarts < 0 || *max_restarts > 1000)
    return Fail("--max-restarts is \"" + flags.Get("max-restarts") + "\"; allowed: 0 to 1000");
  if (!delay_s.ok() || *delay_s < 0 || *delay_s > 3600)
    return Fail("--restart-delay-s is \"" + flags.Get("restart-delay-s") +
                "\"; allowed: 0 to 3600");
  if (!wait_s.ok() || *wait_s <= 0 || *wait_s > 86400)
    return Fail("--coordinator-wait-s is \"" + flags.Get("coordinator-wait-s") +
                "\"; allowed: a number of seconds > 0 and <= 86400");
  if (!grace_s.ok() || *grace_s < 0) return Fail("--grace-s must be a number >= 0");
  if (!progress_s.ok() || *progress_s < 0) return Fail("--progress-s must be a number >= 0");
  if (absl::StatusOr<qsr::HeapPolicy> heap = qsr::ParseHeapPolicy(flags.Get("heap")); !heap.ok())
    return Fail("--heap: " + std::string(heap.status().message()));
  const int workers = static_cast<int>(*nproc);
  absl::StatusOr<std::vector<std::string>> devices = qsr::WorkerDevices(
      flags.Get("device"), workers, qsr::VisibleGpus(std::getenv("CUDA_VISIBLE_DEVICES")));
  if (!devices.ok()) return Fail(std::string(devices.status().message()));

  std::string host = flags.Get("host");
  if (host.empty()) {
    absl::StatusOr<std::string> found = qsr::LocalAddressTowards(coordinator);
    if (!found.ok())
      return Fail("--coordinator " + coordinator + ": " + std::string(found.status().message()));
    host = *found;
    if (qsr::IsLoopbackHost(host) && !qsr::IsLoopbackHost(coord_host)) {
      std::cerr << "qsr-run: warning: the route to the coordinator " << coordinator
                << " leaves from loopback (" << host
                << "): workers on other hosts cannot reach these ones; pass --host ADDRESS\n";
    }
  }
  qsr::NodeLauncher::Options o;
  o.coordinator = coordinator;
  o.host = host;
  o.devices = *devices;
  o.node_name = !flags.Get("node-name").empty() ? flags.Get("node-name")
                : !node_name.empty()            ? node_name
                                                : host;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o.threads = static_cast<int>(*threads > 0 ? *threads : std::max(1, cores / workers));
  o.data_dir = flags.Get("data-dir");
  o.model_path = flags.Get("model-path");
  o.heap = flags.Get("heap");
  o.bin_dir = flags.Get("bin-dir").empty() ? SelfDir() : flags.Get("bin-dir");
  o.log_dir =
      !flags.Get("log-dir").empty()
          ? flags.Get("log-dir")
          : absl::StrCat("qsr-logs/", o.node_name, "-",
                         absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()),
                         absl::StrFormat("-%d", ::getpid()));
  o.restart.max_restarts = static_cast<int>(*max_restarts);
  o.restart.first_delay = absl::Seconds(*delay_s);
  o.coordinator_wait = absl::Seconds(*wait_s);
  o.grace = absl::Seconds(*grace_s);
  o.progress_every = absl::Seconds(flags.IsSet("progress-s") ? *progress_s : 30);
  // The agent is the node's only client of the coordinator: it gets the security flags; the
  // workers reach it on loopback without them.
  o.security.tls = flags.GetBool("tls");
  o.security.tls_ca = flags.Get("tls-ca");
  o.security.tls_cert = flags.Get("tls-client-cert");
  o.security.tls_key = flags.Get("tls-client-key");
  o.security.tls_server_name = flags.Get("tls-server-name");
  absl::StatusOr<std::string> token = qsr::LoadToken(flags.Get("token-file"));
  if (!token.ok()) return Fail(std::string(token.status().message()));
  o.security.token = *token;
  if (flags.GetBool("tls")) o.agent_flags.push_back("--tls");
  for (const auto& [from, to] :
       std::vector<std::pair<const char*, const char*>>{{"tls-ca", "--tls-ca"},
                                                        {"tls-client-cert", "--tls-cert"},
                                                        {"tls-client-key", "--tls-key"},
                                                        {"tls-server-name", "--tls-server-name"},
                                                        {"token-file", "--token-file"}}) {
    if (!flags.Get(from).empty()) o.agent_flags.insert(o.agent_flags.end(), {to, flags.Get(from)});
  }
  *out = std::move(o);
  return std::nullopt;
}

// SIGHUP too: a node started over `ssh -tt` gets it when the launching side goes away, and must
// take its workers down with it.
void CatchSignals() {
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGHUP, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
}

int RunNode(const qsr::FlagParser& flags) {
  if (!flags.Get("recipe").empty()) {
    return Fail(
        "--recipe goes to the qsr-run that starts the coordinator, not with --coordinator "
        "(the workers take the run's recipe from the coordinator)");
  }
  qsr::NodeLauncher::Options o;
  if (std::optional<int> code = NodeOptions(flags, flags.Get("coordinator"), "", &o)) return *code;
  CatchSignals();
  return qsr::NodeLauncher(std::move(o)).Run(&g_signal);
}

// The coordinator of a multi-host run (--hostfile, or Slurm's first task): its command, with
// the recipe (checked before: `recipe`) and --workers set to the run's total.
std::vector<std::string> CoordinatorArgv(const qsr::FlagParser& flags, const std::string& bin,
                                         const std::string& listen, const std::string& run_dir,
                                         const std::string& run_id, const std::string& port_file,
                                         int workers) {
  std::vector<std::string> argv = {bin + "/qsr-coordinator",
                                   "--recipe",
                                   flags.Get("recipe"),
                                   "--listen",
                                   listen,
                                   "--run-dir",
                                   run_dir,
                                   "--run-id",
                                   run_id,
                                   "--port-file",
                                   port_file};
  for (const char* name : {"tls-cert", "tls-key", "tls-client-ca", "token-file"}) {
    if (!flags.Get(name).empty())
      argv.insert(argv.end(), {absl::StrCat("--", name), flags.Get(name)});
  }
  if (flags.GetBool("token-protect-reads")) argv.push_back("--token-protect-reads");
  for (const auto& [k, v] : flags.recipe_overrides()) {
    if (k != "workers") argv.push_back(absl::StrCat("--", k, "=", v));
  }
  argv.push_back(absl::StrCat("--workers=", workers));
  return argv;
}

// The recipe with --workers set to `workers`, checked; the error exits 2.
std::optional<int> CheckRecipe(const qsr::FlagParser& flags, int workers) {
  if (flags.Get("recipe").empty()) return Fail("--recipe FILE is required (see --help)");
  auto overrides = flags.recipe_overrides();
  overrides.emplace_back("workers", absl::StrCat(workers));
  absl::StatusOr<qsr::Recipe> recipe = qsr::LoadRecipeWithOverrides(flags.Get("recipe"), overrides);
  if (!recipe.ok()) return Fail(std::string(recipe.status().message()));
  return std::nullopt;
}

std::string RunIdFrom(const qsr::FlagParser& flags) {
  return flags.Get("run-id").empty()
             ? absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()) +
                   absl::StrFormat("-%d", ::getpid())
             : flags.Get("run-id");
}

// Starts `argv` with its output in `log` (no pipe: nobody needs to read it while it runs).
pid_t SpawnToFile(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv(args[0], args.data());
  ::_exit(127);
}

// srun --ntasks-per-node=1 qsr-run --recipe FILE --nproc-per-node N: the task of node 0 (the
// first host of SLURM_STEP_NODELIST) starts the coordinator on --port; every task, that one
// included, runs its node's agent and workers against FIRST_HOST:PORT.
int RunSlurm(const qsr::FlagParser& flags, const qsr::SlurmTask& task) {
  absl::StatusOr<int64_t> port = flags.GetInt("port");
  if (!port.ok() || *port < 1 || *port > 65535)
    return Fail("--port is \"" + flags.Get("port") +
                "\"; under Slurm every node must know it: 1 to 65535");
  absl::StatusOr<int64_t> nproc = flags.GetInt("nproc-per-node");
  const int total = nproc.ok() ? static_cast<int>(*nproc) * task.ntasks : 0;
  const bool first = task.procid == 0;
  if (first) {
    if (std::optional<int> code = CheckRecipe(flags, std::max(total, 1))) return *code;
  }
  const std::string coordinator = absl::StrCat(task.nodes[0], ":", *port);
  qsr::NodeLauncher::Options o;
  if (std::optional<int> code =
          NodeOptions(flags, coordinator, absl::StrCat("node", task.nodeid), &o)) {
    return *code;
  }
  // One --log-dir on the command line of every task (a shared folder, often): a node each.
  if (flags.IsSet("log-dir")) o.log_dir = absl::StrCat(o.log_dir, "/node", task.nodeid);
  CatchSignals();
  pid_t coord = -1;
  std::string run_dir;
  if (first) {
    const std::string run_id = RunIdFrom(flags);
    run_dir = flags.Get("run-dir").empty() ? "runs/" + run_id : flags.Get("run-dir");
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    if (ec) return Fail("cannot create run directory " + run_dir + ": " + ec.message());
    coord = SpawnToFile(
        CoordinatorArgv(flags, o.bin_dir, absl::StrCat(flags.Get("listen-host"), ":", *port),
                        run_dir, run_id, run_dir + "/coordinator.port", total),
        run_dir + "/coordinator.log");
    std::cout << "qsr-run: Slurm task 0 on " << task.nodes[0] << ": coordinator at " << coordinator
              << " for " << total << " workers on " << task.ntasks << " nodes; its log " << run_dir
              << "/coordinator.log" << std::endl;
  }
  int code = qsr::NodeLauncher(std::move(o)).Run(&g_signal);
  if (coord > 0) {
    // The run is over for this node; the coordinator ends once every node has reported.
    int status = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (::waitpid(coord, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline || g_signal) {
        ::kill(coord, SIGTERM);
        ::waitpid(coord, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    const std::string summary = ReadFile(run_dir + "/summary.json");
    if (!summary.empty()) std::cout << "qsr-run: summary " << summary;
    if (code == 0 && summary.find("\"state\":\"FINISHED\"") == std::string::npos) code = 1;
  }
  return code;
}

// qsr-run --hostfile FILE --recipe FILE: the coordinator here, and each host's node over the
// launcher (ssh by default).
int RunHostfile(const qsr::FlagParser& flags) {
  const std::string file = flags.Get("hostfile");
  std::ifstream in(file);
  if (!in) return Fail("--hostfile " + file + ": cannot read it");
  absl::StatusOr<std::vector<qsr::HostSlots>> hosts = qsr::ParseHostfile(ReadFile(file), file);
  if (!hosts.ok()) return Fail(std::string(hosts.status().message()));
  int total = 0;
  for (const qsr::HostSlots& h : *hosts) total += h.slots;
  if (std::optional<int> code = CheckRecipe(flags, total)) return *code;
  if (!flags.positional().empty())
    return Fail("unexpected argument \"" + flags.positional()[0] + "\"");
  absl::StatusOr<int64_t> port = flags.GetInt("port");
  absl::StatusOr<double> progress_s = flags.GetDouble("progress-s");
  if (!port.ok() || *port < 0 || *port > 65535)
    return Fail("--port is \"" + flags.Get("port") + "\"; allowed: 0 (the OS chooses) to 65535");
  if (!progress_s.ok() || *progress_s <= 0) return Fail("--progress-s must be a number > 0");
  std::string advertise = flags.Get("coordinator-addr");
  if (advertise.empty()) {
    absl::StatusOr<std::string> a =
        qsr::LocalAddressTowards(absl::StrCat((*hosts)[0].host, ":", *port > 0 ? *port : 7070));
    if (!a.ok()) return Fail("--hostfile: " + std::string(a.status().message()));
    advertise = *a;
  }
  const std::string bin = flags.Get("bin-dir").empty() ? SelfDir() : flags.Get("bin-dir");
  const std::string run_id = RunIdFrom(flags);
  std::string run_dir = flags.Get("run-dir").empty() ? "runs/" + run_id : flags.Get("run-dir");
  std::error_code ec;
  std::filesystem::create_directories(run_dir + "/logs", ec);
  if (ec) return Fail("cannot create run directory " + run_dir + ": " + ec.message());
  run_dir = std::filesystem::absolute(run_dir).lexically_normal().string();
  const std::string port_file = run_dir + "/coordinator.port";
  std::filesystem::remove(port_file, ec);
  CatchSignals();
  qsr::ProcessGroup group;
  qsr::ProcessGroup::Output coord_out;
  coord_out.echo = false;
  coord_out.log_path = run_dir + "/logs/coordinator.log";
  if (absl::StatusOr<int> c = group.Spawn(
          "coord",
          CoordinatorArgv(flags, bin, absl::StrCat(flags.Get("listen-host"), ":", *port), run_dir,
                          run_id, port_file, total),
          coord_out);
      !c.ok()) {
    return Fail(std::string(c.status().message()));
  }
  std::string bound;
  const absl::Time port_deadline = absl::Now() + absl::Seconds(30);
  while (bound.empty()) {
    group.Pump(absl::Milliseconds(50));
    bound = ReadFile(port_file);
    while (!bound.empty() && bound.back() == '\n') bound.pop_back();
    if (group.ExitCode(0) || g_signal || absl::Now() > port_deadline) {
      group.TerminateAll(absl::Seconds(5));
      std::cerr << "qsr-run: the coordinator did not start; its log " << coord_out.log_path << ":\n"
                << ReadFile(coord_out.log_path);
      return 1;
    }
  }
  const std::string address = advertise + ":" + bound;
  std::cout << absl::StrFormat("qsr-run: coordinator at %s, %d workers on %d hosts, run dir %s\n",
                               address, total, hosts->size(), run_dir);
  const std::string launcher = flags.Get("launcher");
  const std::string cwd = std::filesystem::current_path(ec).string();
  for (size_t k = 0; k < hosts->size(); ++k) {
    const qsr::HostSlots& h = (*hosts)[k];
    std::vector<std::string> node = {bin + "/qsr-run",
                                     "--coordinator",
                                     address,
                                     "--nproc-per-node",
                                     absl::StrCat(h.slots),
                                     "--node-name",
                                     absl::StrCat("node", k),
                                     "--log-dir",
                                     absl::StrCat(run_dir, "/logs/node", k),
                                     "--progress-s",
                                     "0"};
    for (const char* name :
         {"device", "threads", "data-dir", "model-path", "heap", "max-restarts", "restart-delay-s",
          "coordinator-wait-s", "grace-s", "tls-ca", "tls-client-cert", "tls-client-key",
          "tls-server-name", "token-file"}) {
      if (flags.IsSet(name)) node.insert(node.end(), {absl::StrCat("--", name), flags.Get(name)});
    }
    if (flags.GetBool("tls") || !flags.Get("tls-cert").empty()) node.push_back("--tls");
    qsr::ProcessGroup::Output out;
    out.log_path = absl::StrCat(run_dir, "/logs/node", k, ".out");
    if (absl::StatusOr<int> c = group.Spawn(absl::StrCat("node", k, " ", h.host),
                                            qsr::RemoteCommand(launcher, h.host, cwd, node), out);
        !c.ok()) {
      group.TerminateAll(absl::Seconds(10));
      return Fail(std::string(c.status().message()));
    }
  }
  absl::StatusOr<std::unique_ptr<qsr::OpsClient>> client =
      qsr::OpsClient::Create("127.0.0.1:" + bound, qsr::ClientSecurity());
  absl::Time next_progress = absl::Now() + absl::Seconds(*progress_s);
  bool node_failed = false;
  while (true) {
    group.Pump(absl::Milliseconds(200));
    if (g_signal) {
      std::cout << "qsr-run: signal " << g_signal << ": stopping the nodes and the coordinator\n";
      group.TerminateAll(absl::Seconds(30));
      return 128 + g_signal;
    }
    bool nodes_done = true;
    for (int i = 1; i < group.size(); ++i) nodes_done = nodes_done && group.ExitCode(i).has_value();
    if (nodes_done) break;
    if (group.ExitCode(0)) {
      // The coordinator ended the run: the nodes end with it (bounded by their grace).
      const absl::Time deadline = absl::Now() + absl::Seconds(60);
      while (!group.AllExited() && absl::Now() < deadline) group.Pump(absl::Milliseconds(200));
      break;
    }
    if (client.ok() && absl::Now() >= next_progress) {
      next_progress = absl::Now() + absl::Seconds(*progress_s);
      absl::StatusOr<qsr::v1::GetStatusReply> s = (*client)->GetStatus(absl::Seconds(2));
      if (s.ok() && s->state() == "RUNNING") {
        std::cout << "qsr-run: " << qsr::ProgressLine(*s) << std::endl;
      }
    }
  }
  // Every node has ended: after a finished run the coordinator ends on its own; after a failed
  // node it would wait for workers that are not coming.
  bool all_ok = true;
  for (int i = 1; i < group.size(); ++i) all_ok = all_ok && group.ExitCode(i) == 0;
  const absl::Time deadline = absl::Now() + (all_ok ? absl::Seconds(60) : absl::ZeroDuration());
  while (!group.ExitCode(0) && absl::Now() < deadline) group.Pump(absl::Milliseconds(200));
  group.TerminateAll(absl::Seconds(10));
  for (int i = 1; i < group.size(); ++i) {
    if (group.ExitCode(i) != 0) {
      node_failed = true;
      std::cout << "qsr-run: " << group.Name(i) << " exited with code " << *group.ExitCode(i)
                << "; its output: " << group.LogPath(i) << "\n";
    }
  }
  const std::string summary = ReadFile(run_dir + "/summary.json");
  if (!summary.empty()) std::cout << "qsr-run: summary " << summary;
  if (node_failed || summary.find("\"state\":\"FINISHED\"") == std::string::npos) {
    std::cout << "qsr-run: the run FAILED; logs in " << run_dir << "/logs\n";
    return 1;
  }
  std::cout << absl::StrFormat(
      "qsr-run: done in %.1f s: test accuracy %.4f, %d averaging rounds; logs in %s/logs\n",
      JsonNumber(summary, "elapsed_s"), JsonNumber(summary, "test_acc"),
      static_cast<int64_t>(JsonNumber(summary, "rounds")), run_dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  qsr::FlagParser flags(
      "qsr-run",
      "qsr-run --workers N --recipe FILE [--device cpu|cuda|cuda:0,cuda:1] [--run-dir DIR] "
      "[--KEY=VALUE ...]\n"
      "qsr-run --coordinator HOST:PORT --nproc-per-node N [--device cpu|cuda] [--host ADDR]\n"
      "The first form starts a coordinator and N workers on this machine, shows progress, and "
      "ends with the test accuracy, the number of averaging rounds and the bytes each worker "
      "sent. The second, once on each node of a multi-host run, starts a qsr-agent and N "
      "workers that join the coordinator's run, restarts a worker that dies, and writes each "
      "process's log under --log-dir.");
  flags.Add("recipe", "", "recipe YAML file (required)");
  flags.Add("run-dir", "", "run directory (default runs/RUN_ID)");
  flags.Add("run-id", "", "name of the run (default: date-time-pid)");
  flags.Add("data-dir", "", "dataset location, passed to every worker");
  flags.Add("model-path", "",
            "model torchscript: the TorchScript file, passed to every worker (overrides the "
            "recipe's model_path)");
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
  // A node of a multi-host run (--coordinator).
  flags.Add("coordinator", "", "join the run of the coordinator at HOST:PORT as one node");
  flags.Add("nproc-per-node", "1", "with --coordinator: workers on this node");
  flags.Add("host", "",
            "with --coordinator: the address peers reach this node's workers on (default: the "
            "local address of the route to the coordinator)");
  flags.Add("node-name", "",
            "with --coordinator: worker ids are NAME-w0, NAME-w1, ... (default: "
            "the --host address); unique per node and the same when the node is started again");
  flags.Add("log-dir", "",
            "with --coordinator: one log per process here (default qsr-logs/NODE-DATE-PID)");
  flags.Add("max-restarts", "3",
            "with --coordinator: restarts of dead workers allowed on this node, all together");
  flags.Add("restart-delay-s", "1",
            "with --coordinator: wait before a restart, doubling for each restart of the same "
            "worker (at most 30 s)");
  flags.Add("coordinator-wait-s", "60",
            "with --coordinator: how long to wait for the coordinator to answer before giving up "
            "(exit 2, nothing started)");
  flags.Add("grace-s", "30", "on SIGINT/SIGTERM: how long children get to exit before SIGKILL");
  flags.AddBool("tls", "with --coordinator: TLS to the coordinator with the system's CAs");
  // Launching every node from here (--hostfile) or from Slurm (srun qsr-run).
  flags.Add("hostfile", "",
            "start the coordinator here and one node per line of FILE (DeepSpeed's format: HOST "
            "slots=N) through --launcher");
  flags.Add("launcher", "ssh -o BatchMode=yes {host}",
            "with --hostfile: the command prefix that runs a command on a host; {host} is "
            "replaced by the host (appended when absent); the node's command follows as one "
            "shell word");
  flags.Add("port", "7070",
            "with --hostfile (0: the OS chooses) or under Slurm: the coordinator's port");
  flags.Add("listen-host", "0.0.0.0",
            "with --hostfile or under Slurm: the address the coordinator listens on");
  flags.Add("coordinator-addr", "",
            "with --hostfile: the address the nodes reach the coordinator on (default: the "
            "local address of the route to the first host)");
  flags.AcceptRecipeOverrides();
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  if (!flags.Get("coordinator").empty()) return RunNode(flags);
  if (!flags.Get("hostfile").empty()) return RunHostfile(flags);
  if (flags.IsSet("nproc-per-node")) {
    absl::StatusOr<std::optional<qsr::SlurmTask>> slurm =
        qsr::SlurmTaskFromEnv([](const char* name) { return std::getenv(name); });
    if (!slurm.ok()) return Fail(std::string(slurm.status().message()));
    if (slurm->has_value()) return RunSlurm(flags, **slurm);
  }
  for (const char* node_only : {"nproc-per-node", "host", "node-name", "log-dir", "max-restarts",
                                "restart-delay-s", "coordinator-wait-s"}) {
    if (flags.IsSet(node_only))
      return Fail(std::string("--") + node_only +
                  " goes with --coordinator HOST:PORT, --hostfile FILE or srun");
  }
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
    if (!flags.Get("model-path").empty()) {
      w.push_back("--model-path");
      w.push_back(flags.Get("model-path"));
    }
    w.insert(w.end(), worker_security.begin(), worker_security.end());
    if (absl::StatusOr<int> c = group.Spawn(absl::StrCat("w", i), w); !c.ok()) {
      group.TerminateAll(absl::Seconds(5));
      return Fail(std::string(c.status().message()));
    }
  }

  absl::StatusOr<std::unique_ptr<qsr::OpsClient>> made = qsr::OpsClient::Create(address, security);
  if (!made.ok()) {
    group.TerminateAll(absl::Seconds(5));
    return Fail(std::string(made.status().message()));
  }
  qsr::OpsClient* client = made->get();
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
      absl::StatusOr<qsr::v1::GetStatusReply> s = client->GetStatus(absl::Seconds(2));
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
