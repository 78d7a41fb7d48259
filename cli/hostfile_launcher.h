// qsr-run --hostfile FILE --recipe FILE: the coordinator of a multi-host run on this machine,
// and one node (qsr-run --coordinator ...) per line of the hostfile, each started through
// --launcher (ssh by default) with the node flags given here passed on.
//
// The coordinator's output goes to RUN_DIR/logs/coordinator.log, each node's to
// RUN_DIR/logs/nodeK.out (echoed with a prefix) and its processes' logs under
// RUN_DIR/logs/nodeK/. Ends when every node has ended, or when the coordinator has (the nodes get
// their grace to follow). SIGINT/SIGTERM/SIGHUP (seen through `*signal`) stop everything. Runs
// on the calling thread.
#ifndef QSR_CLI_HOSTFILE_LAUNCHER_H_
#define QSR_CLI_HOSTFILE_LAUNCHER_H_

#include <csignal>

#include "common/flags.h"

namespace qsr {

// 0: the run FINISHED on every node; 1: it or a node failed; 2: a usage error (nothing started);
// 128 + N: stopped by signal N.
int RunHostfile(const FlagParser& flags, volatile std::sig_atomic_t* signal);

}  // namespace qsr

#endif  // QSR_CLI_HOSTFILE_LAUNCHER_H_
