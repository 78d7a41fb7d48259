// Run recovery: which run a starting coordinator serves, and from where.
//
// ChooseRunStart decides, from the --recipe (loaded and resolved), the --state-dir, --run-id and
// --run-dir flags, and what is on disk:
//   - a fresh run: no --state-dir, or a state dir without a journal (one is created there). The
//     run is named --run-id (or `default_run_id`) and uses the --recipe;
//   - a continued run: the state dir's journal holds a run. Its name and its recipe win over the
//     flags (a different --recipe is reported in `warnings`); the journal's rounds, evaluations,
//     generation and end come back in `recovered` for the RunController. A journal whose run has
//     ended is continued too (it answers status and refuses joins as an ended run); a torn tail
//     is dropped and reported in recovered.repair (Journal::Open logs it); a damaged complete
//     entry is an error (DATA_LOSS) naming the line;
//   - where it resumes: the recipe's `resume` key picks a checkpoint under its checkpoint_dir
//     (default: RUN_DIR/checkpoints) and sets resume_from_step (ApplyResume); bad checkpoints
//     passed over are reported in `warnings`.
// The run directory is --run-dir, else the state dir, else runs/RUN_ID.
//
// Errors name the file or flag at fault; nothing is served from a run that could not be read.
// Thread-compatible: call once, before serving. The journal it opens belongs to the caller.
#ifndef QSR_COORDINATOR_RUN_RECOVERY_H_
#define QSR_COORDINATOR_RUN_RECOVERY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/recipe.h"
#include "coordinator/journal.h"

namespace qsr {

struct RunStartFlags {
  std::string state_dir;  // empty: no journal
  std::string run_id;     // empty: the caller's default
  std::string run_dir;    // empty: the state dir, or runs/RUN_ID
};

struct RunStart {
  Recipe recipe;  // resolved, with checkpoint_dir and resume_from_step filled in
  std::string run_id;
  std::string run_dir;
  std::unique_ptr<Journal> journal;   // null without a state dir
  Journal::Recovered recovered;       // recovered.exists: a continued run
  std::string resumed_from;           // the checkpoint manifest resumed from; empty: none
  std::vector<std::string> warnings;  // for the log
};

// REQUIRES: `recipe` resolved (the --recipe with its overrides).
absl::StatusOr<RunStart> ChooseRunStart(Recipe recipe, const RunStartFlags& flags,
                                        const std::string& default_run_id);

}  // namespace qsr

#endif  // QSR_COORDINATOR_RUN_RECOVERY_H_
