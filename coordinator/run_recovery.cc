#include "coordinator/run_recovery.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "checkpoint/checkpoint_manifest.h"

namespace qsr {
namespace {

// The journal's run: its recipe replaces `recipe`.
absl::Status Continue(const RunStartFlags& flags, RunStart* start) {
  start->run_id = start->recovered.run_id;
  absl::StatusOr<Recipe> journaled = ParseRecipeYaml(start->recovered.recipe_yaml, flags.state_dir);
  if (!journaled.ok()) return journaled.status();
  if (absl::Status s = ResolveRecipe(*journaled); !s.ok()) return s;
  if (RecipeChangedOnRestart(start->recipe, *journaled)) {
    start->warnings.push_back(absl::StrCat("--recipe differs from the recipe of the run in ",
                                           flags.state_dir, "; continuing with the journal's"));
  }
  start->recipe = *std::move(journaled);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RunStart> ChooseRunStart(Recipe recipe, const RunStartFlags& flags,
                                        const std::string& default_run_id) {
  RunStart start;
  start.recipe = std::move(recipe);
  start.run_id = flags.run_id.empty() ? default_run_id : flags.run_id;
  if (!flags.state_dir.empty()) {
    absl::StatusOr<std::unique_ptr<Journal>> journal =
        Journal::Open(flags.state_dir, &start.recovered);
    if (!journal.ok()) return journal.status();
    start.journal = *std::move(journal);
    if (start.recovered.exists) {
      if (absl::Status s = Continue(flags, &start); !s.ok()) return s;
    }
  }
  start.run_dir = !flags.run_dir.empty()     ? flags.run_dir
                  : !flags.state_dir.empty() ? flags.state_dir
                                             : "runs/" + start.run_id;
  // Checkpoints go under the run directory unless the recipe says otherwise; workers learn the
  // folder from the recipe (a worker's --checkpoint-dir still wins, for per-machine mounts).
  Recipe& r = start.recipe;
  if (r.checkpoint_dir.empty()) r.checkpoint_dir = start.run_dir + "/checkpoints";
  // resume: the coordinator picks the checkpoint (it owns the plan); workers load its files.
  absl::StatusOr<ChosenCheckpoint> resumed = ApplyResume(r, r.checkpoint_dir);
  if (!resumed.ok()) return resumed.status();
  for (const std::string& skipped : resumed->skipped) {
    start.warnings.push_back("resume: skipped a bad checkpoint: " + skipped);
  }
  start.resumed_from = resumed->manifest_path;
  return start;
}

}  // namespace qsr
