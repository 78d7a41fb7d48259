// RunLog: the run directory, the record of a run that outlives the coordinator.
//
//   recipe.yaml    the resolved recipe
//   rounds.jsonl   one JSON object per completed round (qsr.v1.RunLogRound):
//                  round, step, lr, h, workers, generation, bytes, seconds, train_loss, ...
//   evals.jsonl    one per evaluation (qsr.v1.RunLogEval): step, epoch, test_loss, test_acc, ...
//   summary.json   written when the run ends (qsr.v1.RunLogSummary): state, steps, rounds,
//                  final accuracy, bytes
//
// The messages are in proto/qsr/v1/run_log.proto; RoundLedger renders them with ToJsonLine
// (proto/json/json_line.h), and this class writes the lines it is given.
//
// Lines are flushed as they are written, so a crash loses at most a partial last line, and tools
// can follow a live run. Thread-compatible: the owner (RoundLedger, under the RunController's lock)
// serialises calls.
#ifndef QSR_COORDINATOR_RUN_LOG_H_
#define QSR_COORDINATOR_RUN_LOG_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsr {

class RunLog {
 public:
  // Creates `dir` (and parents) and opens the logs; writes recipe.yaml.
  static absl::StatusOr<std::unique_ptr<RunLog>> Open(const std::string& dir,
                                                      const std::string& recipe_yaml);
  ~RunLog();

  void AppendRound(const std::string& json_line);
  void AppendEval(const std::string& json_line);
  absl::Status WriteSummary(const std::string& json);

  const std::string& dir() const { return dir_; }

 private:
  RunLog(std::string dir, FILE* rounds, FILE* evals)
      : dir_(std::move(dir)), rounds_(rounds), evals_(evals) {}
  std::string dir_;
  FILE* rounds_;
  FILE* evals_;
};

// Writes `contents` to `path` atomically (temporary file, fsync, rename).
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace qsr

#endif  // QSR_COORDINATOR_RUN_LOG_H_
