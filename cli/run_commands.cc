#include "cli/run_commands.h"

#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/recipe.h"

namespace qsr {

int QsrRunUsageError(const std::string& message) {
  std::cerr << "qsr-run: " << message << "\n";
  return 2;
}

std::vector<std::string> CoordinatorSecurityArgs(const FlagParser& flags) {
  std::vector<std::string> args;
  for (const char* name : {"tls-cert", "tls-key", "tls-client-ca", "token-file"}) {
    if (!flags.Get(name).empty())
      args.insert(args.end(), {absl::StrCat("--", name), flags.Get(name)});
  }
  if (flags.GetBool("token-protect-reads")) args.push_back("--token-protect-reads");
  return args;
}

std::vector<std::string> ClientSecurityArgs(const FlagParser& flags, bool tls) {
  std::vector<std::string> args;
  if (tls) args.push_back("--tls");
  for (const auto& [from, to] :
       std::vector<std::pair<const char*, const char*>>{{"tls-ca", "--tls-ca"},
                                                        {"tls-client-cert", "--tls-cert"},
                                                        {"tls-client-key", "--tls-key"},
                                                        {"tls-server-name", "--tls-server-name"},
                                                        {"token-file", "--token-file"}}) {
    if (!flags.Get(from).empty()) args.insert(args.end(), {to, flags.Get(from)});
  }
  return args;
}

std::vector<std::string> CoordinatorArgv(const FlagParser& flags, const CoordinatorLaunch& launch) {
  std::vector<std::string> argv = {launch.bin_dir + "/qsr-coordinator",
                                   "--recipe",
                                   flags.Get("recipe"),
                                   "--listen",
                                   launch.listen,
                                   "--run-dir",
                                   launch.run_dir,
                                   "--run-id",
                                   launch.run_id,
                                   "--port-file",
                                   launch.port_file};
  const std::vector<std::string> security = CoordinatorSecurityArgs(flags);
  argv.insert(argv.end(), security.begin(), security.end());
  for (const auto& [k, v] : flags.recipe_overrides()) {
    if (launch.workers <= 0 || k != "workers") argv.push_back(absl::StrCat("--", k, "=", v));
  }
  if (launch.workers > 0) argv.push_back(absl::StrCat("--workers=", launch.workers));
  return argv;
}

std::vector<std::string> LocalWorkerArgv(const FlagParser& flags, const std::string& bin_dir,
                                         const std::string& coordinator, const std::string& run_id,
                                         int threads, const std::string& device, int index) {
  std::vector<std::string> argv = {bin_dir + "/qsr-worker",
                                   "--coordinator",
                                   coordinator,
                                   "--threads",
                                   absl::StrCat(threads),
                                   "--worker-id",
                                   absl::StrCat(run_id, "-w", index),
                                   "--device",
                                   device,
                                   "--heap",
                                   flags.Get("heap")};
  if (!flags.Get("data-dir").empty())
    argv.insert(argv.end(), {"--data-dir", flags.Get("data-dir")});
  if (!flags.Get("model-path").empty()) {
    argv.insert(argv.end(), {"--model-path", flags.Get("model-path")});
  }
  if (!flags.Get("snapshot-dir").empty()) {
    argv.insert(argv.end(), {"--snapshot-dir", flags.Get("snapshot-dir"), "--snapshot-every",
                             flags.Get("snapshot-every")});
  }
  // The workers use TLS when the coordinator serves it (it has a certificate).
  const std::vector<std::string> security =
      ClientSecurityArgs(flags, !flags.Get("tls-cert").empty());
  argv.insert(argv.end(), security.begin(), security.end());
  return argv;
}

std::vector<std::string> HostfileNodeArgv(const FlagParser& flags, const std::string& bin_dir,
                                          const std::string& coordinator,
                                          const std::string& run_dir, int index, int slots) {
  std::vector<std::string> argv = {bin_dir + "/qsr-run",
                                   "--coordinator",
                                   coordinator,
                                   "--nproc-per-node",
                                   absl::StrCat(slots),
                                   "--node-name",
                                   absl::StrCat("node", index),
                                   "--log-dir",
                                   absl::StrCat(run_dir, "/logs/node", index),
                                   "--progress",
                                   "0s"};
  for (const char* name : {"device", "threads", "data-dir", "model-path", "heap", "max-restarts",
                           "restart-delay", "coordinator-wait", "grace", "tls-ca",
                           "tls-client-cert", "tls-client-key", "tls-server-name", "token-file"}) {
    if (flags.IsSet(name)) argv.insert(argv.end(), {absl::StrCat("--", name), flags.Get(name)});
  }
  if (flags.GetBool("tls") || !flags.Get("tls-cert").empty()) argv.push_back("--tls");
  return argv;
}

std::string RunIdFrom(const FlagParser& flags) {
  return flags.Get("run-id").empty()
             ? absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()) +
                   absl::StrFormat("-%d", ::getpid())
             : flags.Get("run-id");
}

std::string RunDirFrom(const FlagParser& flags, const std::string& run_id) {
  return flags.Get("run-dir").empty() ? "runs/" + run_id : flags.Get("run-dir");
}

std::string BinDirFrom(const FlagParser& flags) {
  if (!flags.Get("bin-dir").empty()) return flags.Get("bin-dir");
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : self.parent_path().string();
}

absl::Status CheckRecipeFor(const FlagParser& flags, int workers) {
  if (flags.Get("recipe").empty()) {
    return absl::InvalidArgumentError("--recipe FILE is required (see --help)");
  }
  auto overrides = flags.recipe_overrides();
  overrides.emplace_back("workers", absl::StrCat(workers));
  return LoadRecipeWithOverrides(flags.Get("recipe"), overrides).status();
}

RunSummary EchoRunSummary(const std::string& run_dir) {
  const std::string text = ReadFileOrEmpty(run_dir + "/summary.json");
  if (text.empty()) return RunSummary();
  std::cout << "qsr-run: summary " << text;
  return ParseRunSummary(text).value_or(RunSummary());
}

}  // namespace qsr
