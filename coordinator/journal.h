// Journal: the coordinator's durable memory of a run, so that a coordinator killed and restarted
// with the same --state-dir continues the run instead of starting a new one.
//
// journal.jsonl is append-only, one JournalEntry (proto/qsr/v1/coordinator.proto) as JSON per
// line: the run started, round plans served, rounds committed, evaluations, generations formed,
// checkpoints, the end. The controller appends an entry before it answers the call that caused
// it, so whatever a worker was told survives a crash of the coordinator process (entries are
// written with write(2); fsync is not needed for that, and a torn last line is ignored).
//
// Thread-compatible: the owner (RunController) serialises calls.
#ifndef QSR_COORDINATOR_JOURNAL_H_
#define QSR_COORDINATOR_JOURNAL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/recipe.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

// Whether `given` (the restarted coordinator's --recipe, resolved) asks for something other than
// `journaled` (the recipe the run was started with, as the journal holds it). The journal's copy
// was completed at the first start with the default checkpoint folder and what `resume` chose;
// those are taken from it where `given` leaves them to be filled in, so that the same --recipe
// does not read as a changed one.
bool RecipeChangedOnRestart(Recipe given, const Recipe& journaled);

class Journal {
 public:
  // What a journal says about its run, replayed in order.
  struct Recovered {
    bool exists = false;  // false: a new run
    std::string run_id;
    std::string recipe_yaml;
    std::vector<v1::RoundPlan> served;
    std::vector<v1::RoundRecord> committed;
    std::vector<v1::EvalReport> evals;
    int64_t generation = 0;
    std::vector<std::string> members;  // of `generation`, by rank
    v1::CheckpointReport last_checkpoint;
    bool ended = false;
    v1::JournalEntry::Ended end;
  };

  // Opens (creating `dir`) the journal in `dir` and replays what it holds. A line that does not
  // parse is an error naming the file and line, except a torn last line (a crash mid-write),
  // which is dropped.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& dir,
                                                       Recovered* recovered);
  ~Journal();

  absl::Status Append(const v1::JournalEntry& entry);
  const std::string& path() const { return path_; }

 private:
  Journal(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace qsr

#endif  // QSR_COORDINATOR_JOURNAL_H_
