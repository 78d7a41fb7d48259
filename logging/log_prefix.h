// Log lines that say which run and which process wrote them.
//
// InitLogging() starts glog with a custom prefix on every line:
//   I1125 14:03:07.123456 4711 run=20261125-140301-42 rank=0 trainer.cc:312] joined run ...
// SetLogContext() fills in the run id and the rank (or a role such as "coord") once they are
// known; until then both show as "-". Lines from every process of a run can then be merged and
// sorted (kubectl logs, qsr-run's interleaved output) and still be told apart.
//
// Thread-safe.
#ifndef QSR_LOGGING_LOG_PREFIX_H_
#define QSR_LOGGING_LOG_PREFIX_H_

#include <string>

namespace qsr {

// Calls google::InitGoogleLogging(argv0) with the prefix above. Call once, first thing in main.
void InitLogging(const char* argv0);

// Sets what later lines show as run= and rank=.
void SetLogContext(const std::string& run_id, const std::string& rank);

// The prefix's context part, "run=... rank=..." (for tests).
std::string LogContext();

}  // namespace qsr

#endif  // QSR_LOGGING_LOG_PREFIX_H_
