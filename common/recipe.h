// Recipe: every setting of a training run, as the authors' YAML recipes name them.
//
// A recipe is parsed from YAML (snake_case keys), then overridden by command-line flags of the same
// name in kebab case (`--max-lr 0.1` or `--max-lr=0.1`), then resolved (derived values filled in)
// and validated. Every error names the key, the value and what is allowed.
//
// Pure logic: no gRPC, no torch. Thread-compatible (a const Recipe may be shared).
#ifndef QSR_COMMON_RECIPE_H_
#define QSR_COMMON_RECIPE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsr {

struct Recipe {
  // Model and data.
  std::string model = "cnn";  // mlp | cnn
  std::string dataset = "fashion-mnist";
  std::string data_dir;  // empty = the dataset's default location
  // model torchscript: the file torch.jit.save wrote (required then, empty otherwise).
  std::string model_path;
  int64_t image_size = 0;  // side of the images a folder dataset produces (0 = 224)
  // Optimizer: sgd | adamw are data-parallel (gradients averaged every step);
  // localsgd | localadamw train locally for H steps, then average the models.
  std::string optimizer = "localsgd";
  double max_lr = 0.1;
  double min_lr = 1e-6;
  double momentum = 0.9;
  bool nesterov = false;
  double wd = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  // LR schedule: cosine | linear | step | constant.
  std::string scheduler = "cosine";
  std::vector<double> decay_points;  // epochs, for scheduler: step
  double gamma = 0.1;                // step-decay factor
  double warmup_epochs = 0.0;
  int64_t warmup_steps = -1;  // -1 = warmup_epochs * steps_per_epoch
  int64_t epochs = 5;
  int64_t epochs_for_sche = -1;  // -1 = epochs; below epochs: steps past T at min_lr, H = 1
  int64_t steps_per_epoch = -1;  // -1 = train examples / total_batch_size
  int64_t total_batch_size = 128;
  int64_t physical_batch_size = -1;  // -1 = total_batch_size / workers (no accumulation)
  int64_t seed = 0;                  // data order
  int64_t init_model_by_seed = 0;    // initial weights
  // Quadratic Synchronization Rule.
  double alpha = 0.0;
  double power = 2.0;
  int64_t min_h = 1;
  int64_t init_h = 1;
  // Run shape.
  int64_t workers = 1;
  // Elasticity: the run goes on while at least min_workers remain (below that it waits for
  // replacements), and admits joiners up to max_workers (-1 = workers) at round boundaries.
  int64_t min_workers = 1;
  int64_t max_workers = -1;
  int64_t eval_batch_size = 1000;

  // Training options, as the authors' scripts name them.
  double label_smoothing = 0.0;
  double gradient_clipping = 0.0;  // max global gradient norm; 0 = no clipping
  bool group_weight = false;       // no weight decay on biases and normalisation parameters
  bool avg_m = false;              // also average AdamW's first moments at a sync
  bool avg_v = false;              // ... and second moments
  double base = 2.0;               // scheduler cosine_step: round the LR to a power of this
  bool bn = false;                 // re-estimate BatchNorm statistics before every evaluation
  int64_t bn_batches = 16;         // micro-batches (over all workers) for that re-estimation
  bool eval_on_start = false;
  // Sync rules beyond QSR.
  int64_t post_local_epoch = -1;  // data-parallel before this epoch, local from it (-1 = off)
  double sync_budget = 0.0;       // > 0: choose alpha so that at most this share of steps sync
  // Data-parallel gradient all-reduce: bucket size in MiB (buckets leave during backward);
  // 0 = one all-reduce of all gradients after backward.
  double bucket_mb = 25.0;
  // Autocast of forward and loss: fp32 (none) | bf16. Weights and optimizer state stay fp32.
  std::string precision = "fp32";
  // Layout of 4-D model tensors and inputs: contiguous (NCHW) | channels_last (NHWC).
  std::string memory_format = "contiguous";
  // What a sync of a local method sends: fp32 (the models) | bf16 (each worker's change since the
  // last sync, in bfloat16: half the bytes; the averaged models stay float32 and identical).
  std::string sync_precision = "fp32";
  // A local method's sync runs in the background while the next round trains, for at most this
  // share of its steps: after ceil(sync_overlap * H) of them each worker waits for it and moves
  // its model by what the average changed (ModelAverager::StartAverage). 0 = off (a round waits
  // for its own sync); 1 = applied at the next round's end. Rounds that evaluate, checkpoint or
  // end the run still end with the models identical.
  double sync_overlap = 0.0;
  // Data loading.
  int64_t nw = 2;            // loader threads that prepare batches ahead of the step
  double mixup_alpha = 0.0;  // 0 = no mixup
  // RandAugment (composer's, augmentation set "all") on every training image after the crop and
  // flip: the authors' --strong-aug, --rand-aug-severity, --rand-aug-depth. Their --strong-aug 1
  // also turns on mixup 0.2; here mixup is mixup_alpha alone.
  bool strong_aug = false;
  int64_t rand_aug_severity = 10;  // 1..10
  int64_t rand_aug_depth = 2;      // operations per image
  // Checkpoints and resume.
  int64_t save_freq = 0;  // save every this many epochs (0 = only at the end when save_dir set)
  bool save_opt = false;  // also save optimizer state
  bool multiple_optimizers = false;  // optimizer state per rank (local methods)
  int64_t resume_from_epoch = -1;
  int64_t resume_from_step = -1;
  std::string resume_pth;
  std::string optimizer_resume_pth;
  std::string init_model_path;  // with init_model_by_seed: -1, load the initial weights
  // Committed checkpoints (step=S/ folders with a MANIFEST.json) go here; empty = the worker's
  // --checkpoint-dir, else runs/<run id>/checkpoints.
  std::string checkpoint_dir;
  // "latest": resume from the newest complete checkpoint under checkpoint_dir; a MANIFEST.json
  // path or step=S folder: from that one; "" = no resume (the coordinator fills resume_from_step,
  // resume_pth and optimizer_resume_pth from the manifest).
  std::string resume;

  bool DataParallel() const { return optimizer == "sgd" || optimizer == "adamw"; }
  bool Adam() const { return optimizer == "adamw" || optimizer == "localadamw"; }
  // Steps the LR schedule spans (T in the rule). Valid after Resolve().
  int64_t ScheduleSteps() const { return epochs_for_sche * steps_per_epoch; }
  // Steps this run trains. Valid after Resolve().
  int64_t TotalSteps() const { return epochs * steps_per_epoch; }
};

// Number of training examples of a known dataset ("fashion-mnist": 60000; "imagenet": 1281167;
// "imagefolder": -1, unknown: its recipe must set steps_per_epoch), or an error naming the
// datasets that are known.
absl::StatusOr<int64_t> DatasetTrainExamples(const std::string& dataset);

// Parses YAML text. Unknown keys, wrong types and malformed YAML are errors naming the key.
// `source` names the text in messages (a file name).
absl::StatusOr<Recipe> ParseRecipeYaml(const std::string& yaml, const std::string& source);
absl::StatusOr<Recipe> LoadRecipeFile(const std::string& path);

// Sets one key from its textual value (as from a flag). `key` is snake_case or kebab-case.
absl::Status SetRecipeKey(Recipe& recipe, const std::string& key, const std::string& value);
// As SetRecipeKey, but a bad value's error names the key as `what` (e.g. "--max-lr") instead of
// `key "max_lr"`, so that flag errors name the flag.
absl::Status SetRecipeKeyAs(Recipe& recipe, const std::string& key, const std::string& value,
                            const std::string& what);
bool IsRecipeKey(const std::string& key);
// Whether `key` names a boolean (so a bare `--nesterov` means true).
bool IsRecipeBoolKey(const std::string& key);
// All recipe keys in kebab case, with a one-line description, for --help.
std::vector<std::pair<std::string, std::string>> RecipeKeyHelp();

// Every recipe key as one Markdown table (| key | meaning | default | allowed values |), from the
// key table: the README's recipe table is this text (a test checks it).
std::string RecipeKeysMarkdown();

// Fills derived values (steps_per_epoch, warmup_steps, epochs_for_sche, physical_batch_size) and
// validates every key. Idempotent.
absl::Status ResolveRecipe(Recipe& recipe);

// The resolved recipe as YAML, every key present; ParseRecipeYaml(ToYaml(r)) == r.
std::string RecipeToYaml(const Recipe& recipe);

}  // namespace qsr

#endif  // QSR_COMMON_RECIPE_H_
