// Test helper: runs real qsr-worker processes against a coordinator until they end.
#ifndef QSR_TESTS_INTEGRATION_WORKER_PROCESSES_H_
#define QSR_TESTS_INTEGRATION_WORKER_PROCESSES_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/process_group.h"

namespace qsr {
namespace testing {

// Starts `n` workers (`worker_bin --coordinator address --threads 1 --worker-id worker-i`, then
// `extra_args`) and waits until all have exited or `timeout` passed; those still running then are
// terminated. Returns each worker's exit code: nullopt for one that did not start or did not exit
// in time (the test's log shows which: ProcessGroup reports a failed start).
inline std::vector<std::optional<int>> RunWorkers(const std::string& worker_bin,
                                                  const std::string& address, int n,
                                                  absl::Duration timeout,
                                                  const std::vector<std::string>& extra_args = {}) {
  ProcessGroup workers;
  std::vector<int> child(n, -1);  // worker -> its index in `workers`, -1: did not start
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv = {
        worker_bin,    "--coordinator",           address, "--threads", "1",
        "--worker-id", absl::StrCat("worker-", i)};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    absl::StatusOr<int> index = workers.Spawn(absl::StrCat("w", i), argv);
    if (index.ok()) child[i] = *index;
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (!workers.AllExited() && absl::Now() < deadline) workers.Pump(absl::Milliseconds(100));
  std::vector<std::optional<int>> codes(n);
  for (int i = 0; i < n; ++i) {
    if (child[i] >= 0) codes[i] = workers.ExitCode(child[i]);
  }
  if (!workers.AllExited()) workers.TerminateAll(absl::Seconds(5));
  return codes;
}

}  // namespace testing
}  // namespace qsr

#endif  // QSR_TESTS_INTEGRATION_WORKER_PROCESSES_H_
