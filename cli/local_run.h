// The single-machine form of qsr-run (qsr-run --recipe FILE [--workers N]): a coordinator on
// loopback and the recipe's workers as child processes of this one, their output interleaved
// with a prefix each, a progress line every --progress, and a last line with the test
// accuracy, the rounds and the bytes each worker sent.
//
// A worker that dies does not end the run (the coordinator re-forms the group without it, or
// fails the run); the coordinator's exit does. SIGINT/SIGTERM (seen through `*signal`) stop every
// child. Runs on the calling thread until the run ends.
#ifndef QSR_CLI_LOCAL_RUN_H_
#define QSR_CLI_LOCAL_RUN_H_

#include <csignal>

#include "common/flags.h"

namespace qsr {

// 0: the run FINISHED; 1: it failed; 2: a usage error (nothing started); 130: interrupted.
int RunLocal(const FlagParser& flags, volatile std::sig_atomic_t* signal);

}  // namespace qsr

#endif  // QSR_CLI_LOCAL_RUN_H_
