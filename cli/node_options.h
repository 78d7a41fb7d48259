// The options of one node of a multi-host run (qsr-run --coordinator HOST:PORT --nproc-per-node
// N, or a Slurm task), from qsr-run's flags. Every check runs here, before anything starts.
//
// Reads the environment (CUDA_VISIBLE_DEVICES, $QSR_TOKEN), the routing table when --host is not
// given, and the token file; thread-compatible.
#ifndef QSR_CLI_NODE_OPTIONS_H_
#define QSR_CLI_NODE_OPTIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "cli/node_launcher.h"
#include "common/flags.h"

namespace qsr {

// The node's launcher options for the coordinator at `coordinator` (HOST:PORT). The node is named
// by --node-name, else `default_node_name`, else its host. An InvalidArgument error names the
// bad flag and what is allowed (qsr-run exits 2 with it). Warns on stderr when the route to a
// remote coordinator leaves from loopback.
absl::StatusOr<NodeLauncher::Options> NodeOptionsFromFlags(const FlagParser& flags,
                                                           const std::string& coordinator,
                                                           const std::string& default_node_name);

}  // namespace qsr

#endif  // QSR_CLI_NODE_OPTIONS_H_
