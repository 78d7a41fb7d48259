// Journal: the coordinator's durable memory of a run, so that a coordinator killed and restarted
// with the same --state-dir continues the run instead of starting a new one.
//
// journal.jsonl is append-only, one JournalEntry (proto/qsr/v1/coordinator.proto) per line: the
// run started, round plans served, rounds committed, evaluations, generations formed,
// checkpoints, the end. The controller appends an entry before it answers the call that caused
// it, so whatever a worker was told survives a crash of the coordinator process (entries are
// written with write(2); fsync is not needed for that).
//
// Line format: the entry as one-line JSON, a tab, and the CRC-32 (zlib's) of the JSON as 8
// lowercase hex digits. The checksum is what tells a damaged entry from a valid one: a bit
// flipped inside a number still parses as JSON and would otherwise replay as a different plan.
// Lines without a tab (journals written before the checksum, 2026-12-05) are read as plain JSON.
//
// Reading a damaged journal (Open):
//   - a torn tail (bytes after the last newline: a crash in the middle of a write, or garbage
//     appended without a newline) is dropped, the file is truncated to the last complete entry,
//     and Recovered::repair says so (the coordinator logs it). Nothing was answered from a torn
//     entry, so dropping it loses nothing a worker was told.
//   - a complete line that fails its checksum or does not parse is refused (DATA_LOSS) with a
//     message naming the file, the line, the byte offset and the command that cuts the journal
//     back to the entries before it: such a line was written whole, so the call it records may
//     have been answered, and replaying around it could serve a wrong plan.
//
// Thread-compatible: the owner (RoundLedger, under the RunController's lock) serialises calls.
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

// One journal line (without its newline) for `json`: the JSON, a tab, its CRC-32 in hex.
std::string JournalLine(const std::string& json);
// The JSON of one journal line (without its newline), checked against its checksum; lines
// without a tab are taken as they are. DATA_LOSS naming what is wrong otherwise.
absl::StatusOr<std::string> JournalLineJson(const std::string& line);

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
    // Non-empty when Open() dropped a torn tail: what was dropped and where the journal now
    // ends. For the log.
    std::string repair;
  };

  // Opens (creating `dir`) the journal in `dir` and replays what it holds; see the file comment
  // for damaged journals (a torn tail is dropped and reported in `repair`, a damaged complete
  // line is DATA_LOSS).
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
