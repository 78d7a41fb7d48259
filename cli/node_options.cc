#include "cli/node_options.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/route_address.h"
#include "cli/run_commands.h"
#include "cli/worker_devices.h"
#include "client/connection_security.h"
#include "worker/heap_policy.h"

namespace qsr {
namespace {

absl::Status Bad(const std::string& message) { return absl::InvalidArgumentError(message); }

// The numeric flags of a node, checked.
absl::Status SetNumbers(const FlagParser& flags, NodeLauncher::Options* o, int* workers) {
  const int64_t nproc = flags.Int("nproc-per-node");
  if (nproc < 1 || nproc > 1024) {
    return Bad(absl::StrCat("--nproc-per-node is ", nproc,
                            "; allowed: an integer from 1 to 1024 (workers on this node)"));
  }
  const int64_t threads = flags.Int("threads");
  const int64_t max_restarts = flags.Int("max-restarts");
  const absl::Duration delay = flags.Duration("restart-delay");
  const absl::Duration wait = flags.Duration("coordinator-wait");
  const absl::Duration grace = flags.Duration("grace");
  const absl::Duration progress = flags.Duration("progress");
  const auto is = [](const char* flag, absl::Duration d) {
    return absl::StrCat("--", flag, " is ", absl::FormatDuration(d));
  };
  if (threads < 0) return Bad(absl::StrCat("--threads is ", threads, "; allowed: >= 0"));
  if (max_restarts < 0 || max_restarts > 1000)
    return Bad(absl::StrCat("--max-restarts is ", max_restarts, "; allowed: 0 to 1000"));
  if (delay < absl::ZeroDuration() || delay > absl::Hours(1))
    return Bad(is("restart-delay", delay) + "; allowed: 0s to 1h");
  if (wait <= absl::ZeroDuration() || wait > absl::Hours(24))
    return Bad(is("coordinator-wait", wait) + "; allowed: above 0s, at most 24h");
  if (grace < absl::ZeroDuration()) return Bad(is("grace", grace) + "; allowed: 0s or more");
  if (progress < absl::ZeroDuration())
    return Bad(is("progress", progress) + "; allowed: 0s (none) or more");
  *workers = static_cast<int>(nproc);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  o->threads = static_cast<int>(threads > 0 ? threads : std::max(1, cores / *workers));
  o->restart.max_restarts = static_cast<int>(max_restarts);
  o->restart.first_delay = delay;
  o->coordinator_wait = wait;
  o->grace = grace;
  o->progress_every = flags.IsSet("progress") ? progress : absl::Seconds(30);
  return absl::OkStatus();
}

// The address peers reach this node on: --host, or the local end of the route to the
// coordinator.
absl::StatusOr<std::string> NodeHost(const FlagParser& flags, const std::string& coordinator,
                                     const std::string& coord_host) {
  if (!flags.Get("host").empty()) return flags.Get("host");
  absl::StatusOr<std::string> host = LocalAddressTowards(coordinator);
  if (!host.ok())
    return Bad("--coordinator " + coordinator + ": " + std::string(host.status().message()));
  if (IsLoopbackHost(*host) && !IsLoopbackHost(coord_host)) {
    std::cerr << "qsr-run: warning: the route to the coordinator " << coordinator
              << " leaves from loopback (" << *host
              << "): workers on other hosts cannot reach these ones; pass --host ADDRESS\n";
  }
  return host;
}

// The agent is the node's only client of the coordinator: it gets the security flags; the
// workers reach it on loopback without them.
absl::Status SetSecurity(const FlagParser& flags, NodeLauncher::Options* o) {
  o->security.tls = flags.GetBool("tls");
  o->security.tls_ca = flags.Get("tls-ca");
  o->security.tls_cert = flags.Get("tls-client-cert");
  o->security.tls_key = flags.Get("tls-client-key");
  o->security.tls_server_name = flags.Get("tls-server-name");
  absl::StatusOr<std::string> token = LoadToken(flags.Get("token-file"));
  if (!token.ok()) return Bad(std::string(token.status().message()));
  o->security.token = *token;
  o->agent_flags = ClientSecurityArgs(flags, flags.GetBool("tls"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NodeLauncher::Options> NodeOptionsFromFlags(const FlagParser& flags,
                                                           const std::string& coordinator,
                                                           const std::string& default_node_name) {
  if (!flags.positional().empty())
    return Bad("unexpected argument \"" + flags.positional()[0] + "\"");
  std::string coord_host;
  int coord_port = 0;
  if (absl::Status s = SplitHostPort(coordinator, &coord_host, &coord_port); !s.ok())
    return Bad("--coordinator " + std::string(s.message()));
  NodeLauncher::Options o;
  int workers = 0;
  if (absl::Status s = SetNumbers(flags, &o, &workers); !s.ok()) return s;
  if (absl::StatusOr<HeapPolicy> heap = ParseHeapPolicy(flags.Get("heap")); !heap.ok())
    return Bad("--heap: " + std::string(heap.status().message()));
  absl::StatusOr<std::vector<std::string>> devices =
      WorkerDevices(flags.Get("device"), workers, VisibleGpus(std::getenv("CUDA_VISIBLE_DEVICES")));
  if (!devices.ok()) return Bad(std::string(devices.status().message()));
  absl::StatusOr<std::string> host = NodeHost(flags, coordinator, coord_host);
  if (!host.ok()) return host.status();
  o.coordinator = coordinator;
  o.host = *host;
  o.devices = *devices;
  o.node_name = !flags.Get("node-name").empty() ? flags.Get("node-name")
                : !default_node_name.empty()    ? default_node_name
                                                : o.host;
  o.data_dir = flags.Get("data-dir");
  o.model_path = flags.Get("model-path");
  o.heap = flags.Get("heap");
  o.bin_dir = BinDirFrom(flags);
  o.log_dir =
      !flags.Get("log-dir").empty()
          ? flags.Get("log-dir")
          : absl::StrCat("qsr-logs/", o.node_name, "-",
                         absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(), absl::LocalTimeZone()),
                         absl::StrFormat("-%d", ::getpid()));
  if (absl::Status s = SetSecurity(flags, &o); !s.ok()) return s;
  return o;
}

}  // namespace qsr
