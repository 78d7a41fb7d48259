// Committed checkpoints: the manifest that makes a checkpoint directory complete, its
// verification, and the choice of the checkpoint to resume from.
//
// Layout (written by the workers, see worker/checkpoint_writer.h):
//   <checkpoint_dir>/step=S/model_step=S-epoch=E.pt        the model, by rank 0
//   <checkpoint_dir>/step=S/opt_step=S-epoch=E.pt          one optimizer state (data-parallel)
//   <checkpoint_dir>/step=S/opt_step=S-epoch=E/rank=R.pt   each rank's state (local methods)
//   <checkpoint_dir>/step=S/MANIFEST.json                  written last, atomically, by rank 0
// A step=S folder without a readable manifest whose every file has the recorded size and CRC-32
// is not a checkpoint: a crash mid-write never leaves one that looks complete.
//
// Pure logic (no torch, no gRPC): the coordinator chooses the checkpoint at startup. Thread-safe
// (no shared state). Nothing throws.
#ifndef QSR_CHECKPOINT_CHECKPOINT_MANIFEST_H_
#define QSR_CHECKPOINT_CHECKPOINT_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/recipe.h"

namespace qsr {

inline constexpr char kManifestName[] = "MANIFEST.json";

struct ManifestFile {
  std::string path;  // relative to the manifest's folder
  int64_t bytes = 0;
  uint32_t crc32 = 0;
};

struct CheckpointManifest {
  int64_t step = 0;   // the first step the resumed run trains
  int64_t epoch = 0;  // step / steps_per_epoch (rounded down)
  int64_t round = 0;  // the last round trained before the checkpoint
  int64_t h = 0;      // that round's H
  int64_t world_size = 0;
  std::string recipe_yaml;  // the run's resolved recipe
  std::string model;        // the model file, relative (empty: none)
  // The optimizer state, relative: a file, or a folder of rank=R.pt files when per_rank
  // (empty: none saved).
  std::string optimizer;
  bool per_rank = false;
  std::vector<ManifestFile> files;  // every file above, with size and checksum
};

// The folder of step S's checkpoint under `checkpoint_dir`: "<checkpoint_dir>/step=S".
std::string CheckpointStepDir(const std::string& checkpoint_dir, int64_t step);

// Size and CRC-32 (zlib's) of a file. NotFound / DataLoss naming the file.
absl::StatusOr<ManifestFile> DigestFile(const std::string& path);

// The manifest as one line of JSON and a newline: qsr.v1.CheckpointManifestRecord
// (proto/qsr/v1/run_log.proto) through ToJsonLine, format 1.
std::string ManifestToJson(const CheckpointManifest& manifest);
// Parses ManifestToJson's output; keys a newer qsr added are skipped. DataLoss naming `source`
// and what is wrong (not JSON, a field missing or of the wrong type, another format, a file path
// outside the checkpoint).
absl::StatusOr<CheckpointManifest> ParseManifest(const std::string& json,
                                                 const std::string& source);

// Writes `<dir>/MANIFEST.json` atomically (temporary file, fsync, rename).
absl::Status WriteManifest(const std::string& dir, const CheckpointManifest& manifest);

// Reads `manifest_path` and checks that every file it lists has its recorded size and
// checksum. DataLoss / NotFound naming the file that is wrong (the manifest, or a listed file).
absl::StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& manifest_path);

struct ChosenCheckpoint {
  std::string manifest_path;
  CheckpointManifest manifest;
  // The newer checkpoints that were passed over, each "<path>: <why>" naming the bad file.
  std::vector<std::string> skipped;
};

// The newest step=S folder under `checkpoint_dir` that verifies. NotFound when there is none,
// listing every folder skipped and why.
absl::StatusOr<ChosenCheckpoint> NewestGoodCheckpoint(const std::string& checkpoint_dir);

// Applies the recipe's `resume` key: "" does nothing; "latest" picks NewestGoodCheckpoint() under
// recipe.checkpoint_dir (or `default_checkpoint_dir` when that is empty); any other value is a
// MANIFEST.json path or a step=S folder, which must verify. Fills resume_from_step, resume_pth and
// optimizer_resume_pth from the manifest (paths absolute or as given), then re-resolves the
// recipe. Returns the choice (for the log: what was skipped). Errors name the file.
absl::StatusOr<ChosenCheckpoint> ApplyResume(Recipe& recipe,
                                             const std::string& default_checkpoint_dir);

}  // namespace qsr

#endif  // QSR_CHECKPOINT_CHECKPOINT_MANIFEST_H_
