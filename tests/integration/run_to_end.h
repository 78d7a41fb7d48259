// Test helper: a coordinator in this process and real qsr-worker processes, run to the end.
#ifndef QSR_TESTS_INTEGRATION_RUN_TO_END_H_
#define QSR_TESTS_INTEGRATION_RUN_TO_END_H_

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/recipe.h"
#include "coordinator/coordinator_server.h"
#include "tests/integration/worker_processes.h"

namespace qsr {
namespace testing {

struct RunToEndOptions {
  std::string worker_bin;  // required: the qsr-worker binary
  std::string run_id = "it";
  // Bound on the workers, from their start to their exit (each is then terminated).
  absl::Duration workers_timeout = absl::Seconds(240);
  std::vector<std::string> worker_args;  // appended to every worker's command line
};

// Starts a coordinator for `recipe` (run folder `run_dir`) and `recipe.workers` workers, and
// waits for both to finish. Failures are test failures (EXPECT), naming the worker and whether it
// did not finish in time; returns the finished server for the caller's checks, or null when the
// coordinator did not start.
inline std::unique_ptr<CoordinatorServer> RunToEnd(const Recipe& recipe, const std::string& run_dir,
                                                   const RunToEndOptions& run) {
  CoordinatorServer::Options options;
  options.run_dir = run_dir;
  options.run.run_id = run.run_id;
  options.run.rendezvous_timeout = absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, options);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  const std::vector<std::optional<int>> codes =
      RunWorkers(run.worker_bin, (*server)->address(), static_cast<int>(recipe.workers),
                 run.workers_timeout, run.worker_args);
  for (size_t i = 0; i < codes.size(); ++i) {
    EXPECT_EQ(codes[i], 0) << "worker " << i
                           << " (nullopt: did not start, or did not finish within the deadline)";
  }
  EXPECT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(10)));
  return std::move(*server);
}

}  // namespace testing
}  // namespace qsr

#endif  // QSR_TESTS_INTEGRATION_RUN_TO_END_H_
