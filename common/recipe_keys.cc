#include "common/recipe_keys.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace qsr {
namespace recipe_internal {
namespace {

// ---------------------------------------------------------------------------------------------
// Value formatting and parsing, shared by YAML, flags and validation messages.

std::string FormatList(const std::vector<double>& values) {
  std::vector<std::string> parts;
  for (double v : values) parts.push_back(FormatDouble(v));
  return absl::StrJoin(parts, ",");
}

// Each parser returns an error body such as `value "abc" is not a number`; the caller prefixes it
// with where the value came from (a YAML line, a flag).
absl::Status BadValue(absl::string_view value, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("value \"", value, "\" ", problem));
}

absl::Status ParseInt(absl::string_view text, int64_t& out) {
  int64_t v;
  if (!absl::SimpleAtoi(text, &v)) return BadValue(text, "is not an integer");
  out = v;
  return absl::OkStatus();
}

absl::Status ParseBool(absl::string_view text, bool& out) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower == "true" || lower == "1" || lower == "yes") {
    out = true;
  } else if (lower == "false" || lower == "0" || lower == "no") {
    out = false;
  } else {
    return BadValue(text, "is not a boolean (true/false/1/0/yes/no)");
  }
  return absl::OkStatus();
}

// A comma-separated list ("30,60"); empty text is the empty list.
absl::Status ParseList(absl::string_view text, std::vector<double>& out) {
  std::vector<double> values;
  if (!absl::StripAsciiWhitespace(text).empty()) {
    for (absl::string_view part : absl::StrSplit(text, ',')) {
      double v;
      absl::Status s = ParseDouble(absl::StripAsciiWhitespace(part), v);
      if (!s.ok()) {
        return BadValue(text,
                        absl::StrCat("is not a comma-separated list of numbers (\"",
                                     absl::StripAsciiWhitespace(part), "\" is not a number)"));
      }
      values.push_back(v);
    }
  }
  out = std::move(values);
  return absl::OkStatus();
}

}  // namespace

absl::Status ParseDouble(absl::string_view text, double& out) {
  double v;
  if (!absl::SimpleAtod(text, &v)) return BadValue(text, "is not a number");
  if (!std::isfinite(v)) return BadValue(text, "is not a finite number");
  out = v;
  return absl::OkStatus();
}

// Shortest text that parses back to the same double, so RecipeToYaml round-trips exactly.
std::string FormatDouble(double value) {
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, result.ptr);
}

// ---------------------------------------------------------------------------------------------
// The key table: the one place that knows every key. YAML parsing, SetRecipeKey, RecipeToYaml
// and RecipeKeyHelp all iterate it.

const std::vector<KeyDef>& Keys() {
  static const auto* keys = new std::vector<KeyDef>{
      {"model",
       &Recipe::model,
       "model architecture",
       {"mlp", "cnn", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vit",
        "vit_b16", "vit_small", "torchscript"}},
      {"model_path",
       &Recipe::model_path,
       "model torchscript: the file torch.jit.save wrote (the worker's --model-path overrides it)",
       {}},
      {"dataset", &Recipe::dataset, "training dataset", {}},
      {"data_dir",
       &Recipe::data_dir,
       "dataset folder, or file for tensors (empty = the dataset's default)",
       {}},
      {"image_size",
       &Recipe::image_size,
       "imagenet / imagefolder: side of the cropped images (0 = 224)",
       {}},
      {"optimizer",
       &Recipe::optimizer,
       "optimizer; the local ones average models every H steps, the others gradients every step",
       {"sgd", "localsgd", "adamw", "localadamw"}},
      {"max_lr", &Recipe::max_lr, "peak learning rate", {}},
      {"min_lr", &Recipe::min_lr, "learning rate at the start of warmup and the end of decay", {}},
      {"momentum", &Recipe::momentum, "SGD momentum, in [0, 1)", {}},
      {"nesterov", &Recipe::nesterov, "Nesterov momentum (needs momentum > 0)", {}},
      {"wd", &Recipe::wd, "weight decay", {}},
      {"beta1", &Recipe::beta1, "AdamW beta1, in [0, 1)", {}},
      {"beta2", &Recipe::beta2, "AdamW beta2, in [0, 1)", {}},
      {"eps", &Recipe::eps, "AdamW epsilon", {}},
      {"scheduler",
       &Recipe::scheduler,
       "learning-rate decay after warmup",
       {"cosine", "linear", "step", "constant", "cosine_step"}},
      {"decay_points", &Recipe::decay_points, "epochs where step decay multiplies by gamma", {}},
      {"gamma", &Recipe::gamma, "step-decay factor, in (0, 1]", {}},
      {"warmup_epochs", &Recipe::warmup_epochs, "linear warmup length in epochs", {}},
      {"warmup_steps",
       &Recipe::warmup_steps,
       "warmup length in steps (-1 = from warmup_epochs)",
       {}},
      {"epochs", &Recipe::epochs, "epochs to train", {}},
      {"epochs_for_sche",
       &Recipe::epochs_for_sche,
       "epochs the LR schedule spans (-1 = epochs)",
       {}},
      {"steps_per_epoch",
       &Recipe::steps_per_epoch,
       "steps per epoch (-1 = train examples / total_batch_size)",
       {}},
      {"total_batch_size", &Recipe::total_batch_size, "global batch size over all workers", {}},
      {"physical_batch_size",
       &Recipe::physical_batch_size,
       "per-worker micro-batch (-1 = total_batch_size / workers, no accumulation)",
       {}},
      {"seed", &Recipe::seed, "seed of the data order", {}},
      {"init_model_by_seed", &Recipe::init_model_by_seed, "seed of the initial weights", {}},
      {"alpha", &Recipe::alpha, "QSR coefficient (0 = constant H = init_h)", {}},
      {"power", &Recipe::power, "QSR exponent: H = floor((alpha / lr)^power)", {}},
      {"min_h", &Recipe::min_h, "smallest H after warmup", {}},
      {"init_h", &Recipe::init_h, "H during warmup (and always when alpha = 0)", {}},
      {"workers", &Recipe::workers, "number of workers", {}},
      {"min_workers",
       &Recipe::min_workers,
       "the run goes on after failures while this many workers remain",
       {}},
      {"max_workers",
       &Recipe::max_workers,
       "most workers admitted (joiners enter at round boundaries; -1 = workers)",
       {}},
      {"eval_batch_size", &Recipe::eval_batch_size, "batch size for evaluation", {}},
      {"label_smoothing", &Recipe::label_smoothing, "label smoothing of the loss, in [0, 1)", {}},
      {"gradient_clipping",
       &Recipe::gradient_clipping,
       "clip the global gradient norm to this (0 = no clipping)",
       {}},
      {"group_weight",
       &Recipe::group_weight,
       "no weight decay on biases and normalisation parameters",
       {}},
      {"avg_m", &Recipe::avg_m, "also average AdamW first moments at a sync", {}},
      {"avg_v", &Recipe::avg_v, "also average AdamW second moments at a sync", {}},
      {"base", &Recipe::base, "cosine_step: LR rounded to the nearest power of this (> 1)", {}},
      {"bn", &Recipe::bn, "re-estimate BatchNorm statistics before every evaluation", {}},
      {"bn_batches",
       &Recipe::bn_batches,
       "training micro-batches (over all workers) for BatchNorm re-estimation",
       {}},
      {"eval_on_start", &Recipe::eval_on_start, "evaluate before the first step", {}},
      {"post_local_epoch",
       &Recipe::post_local_epoch,
       "post-local SGD: data-parallel before this epoch, local from it (-1 = off)",
       {}},
      {"sync_budget",
       &Recipe::sync_budget,
       "choose alpha so that at most this share of steps ends in a sync (0 = use alpha)",
       {}},
      {"bucket_mb",
       &Recipe::bucket_mb,
       "data-parallel gradient bucket size in MiB, all-reduced during backward (0 = one "
       "all-reduce after backward)",
       {}},
      {"precision",
       &Recipe::precision,
       "forward and loss precision: fp32, or bf16 autocast (CUDA GPUs with bf16, or the CPU); fp16 "
       "(loss scaling with recompute on overflow) is accepted here but not yet trainable",
       {"fp32", "bf16", "fp16"}},
      {"memory_format",
       &Recipe::memory_format,
       "layout of convolution weights and inputs: contiguous (NCHW) or channels_last (NHWC; on "
       "the CPU the cnn trains ~30% faster, ResNet-18 ~12% slower)",
       {"contiguous", "channels_last"}},
      {"sync_precision",
       &Recipe::sync_precision,
       "what a local method's sync sends: fp32 models, or bf16 changes since the last sync (half "
       "the bytes)",
       {"fp32", "bf16"}},
      {"sync_overlap",
       &Recipe::sync_overlap,
       "share of the next round a local method's sync may travel through, applied after that "
       "many of its steps (hides the sync behind compute on slow links; 0 = off)",
       {}},
      {"nw", &Recipe::nw, "loader threads preparing batches ahead of the step", {}},
      {"mixup_alpha", &Recipe::mixup_alpha, "mixup Beta(a, a) parameter (0 = off)", {}},
      {"strong_aug",
       &Recipe::strong_aug,
       "RandAugment (composer's, all 13 operations) on every training image after the crop and "
       "flip (the authors' --strong-aug; their mixup 0.2 is mixup_alpha, set separately)",
       {}},
      {"rand_aug_severity",
       &Recipe::rand_aug_severity,
       "RandAugment magnitude bound (10 = strongest)",
       {}},
      {"rand_aug_depth", &Recipe::rand_aug_depth, "RandAugment operations per image", {}},
      {"save_freq", &Recipe::save_freq, "checkpoint every this many epochs (0 = never)", {}},
      {"save_opt", &Recipe::save_opt, "also checkpoint optimizer state", {}},
      {"multiple_optimizers",
       &Recipe::multiple_optimizers,
       "optimizer state per rank in checkpoints (local methods)",
       {}},
      {"resume_from_epoch", &Recipe::resume_from_epoch, "resume at this epoch (-1 = off)", {}},
      {"resume_from_step", &Recipe::resume_from_step, "resume at this step (-1 = off)", {}},
      {"resume_pth", &Recipe::resume_pth, "model checkpoint to resume from", {}},
      {"optimizer_resume_pth",
       &Recipe::optimizer_resume_pth,
       "optimizer checkpoint (a folder with multiple_optimizers) to resume from",
       {}},
      {"init_model_path",
       &Recipe::init_model_path,
       "initial weights to load when init_model_by_seed is -1",
       {}},
      {"checkpoint_dir",
       &Recipe::checkpoint_dir,
       "where committed checkpoints (step=S/ with MANIFEST.json) go (empty = the worker's "
       "--checkpoint-dir, else runs/RUN_ID/checkpoints)",
       {}},
      {"resume",
       &Recipe::resume,
       "resume from a committed checkpoint: latest (the newest complete one under "
       "checkpoint_dir), a MANIFEST.json or step=S folder, or empty (off)",
       {}},
  };
  return *keys;
}

std::string ToSnake(absl::string_view key) { return absl::StrReplaceAll(key, {{"-", "_"}}); }
std::string ToKebab(absl::string_view key) { return absl::StrReplaceAll(key, {{"_", "-"}}); }

const KeyDef* FindKey(absl::string_view snake) {
  for (const KeyDef& def : Keys()) {
    if (snake == def.name) return &def;
  }
  return nullptr;
}

namespace {

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The closest key name, if it is close enough to be a likely typo; empty otherwise.
std::string ClosestKey(absl::string_view snake) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, snake.size() / 3) + 1;
  for (const KeyDef& def : Keys()) {
    const size_t d = EditDistance(snake, def.name);
    if (d < best_distance) {
      best_distance = d;
      best = def.name;
    }
  }
  return best;
}

}  // namespace

std::string QuoteKey(absl::string_view snake) { return absl::StrCat("\"", snake, "\""); }

// `unknown key "max_lrr" (did you mean "max_lr"?)`.
absl::Status UnknownKey(absl::string_view snake) {
  std::string message = absl::StrCat("unknown key ", QuoteKey(snake));
  const std::string closest = ClosestKey(snake);
  if (!closest.empty()) absl::StrAppend(&message, " (did you mean ", QuoteKey(closest), "?)");
  return absl::InvalidArgumentError(message);
}

// Parses `text` into the field `def` names. Errors are the bodies from the parsers above.
absl::Status SetField(Recipe& recipe, const KeyDef& def, absl::string_view text) {
  struct Setter {
    Recipe& recipe;
    const KeyDef& def;
    absl::string_view text;
    absl::Status operator()(std::string Recipe::*f) const {
      if (!def.allowed.empty() &&
          std::find(def.allowed.begin(), def.allowed.end(), text) == def.allowed.end()) {
        return BadValue(text, absl::StrCat("is not one of ", absl::StrJoin(def.allowed, ", ")));
      }
      recipe.*f = std::string(text);
      return absl::OkStatus();
    }
    absl::Status operator()(double Recipe::*f) const { return ParseDouble(text, recipe.*f); }
    absl::Status operator()(int64_t Recipe::*f) const { return ParseInt(text, recipe.*f); }
    absl::Status operator()(bool Recipe::*f) const { return ParseBool(text, recipe.*f); }
    absl::Status operator()(std::vector<double> Recipe::*f) const {
      return ParseList(text, recipe.*f);
    }
  };
  return std::visit(Setter{recipe, def, text}, def.field);
}

// The field's value as text that SetField parses back (lists comma-separated).
std::string FieldText(const Recipe& recipe, const KeyDef& def) {
  struct Getter {
    const Recipe& recipe;
    std::string operator()(std::string Recipe::*f) const { return recipe.*f; }
    std::string operator()(double Recipe::*f) const { return FormatDouble(recipe.*f); }
    std::string operator()(int64_t Recipe::*f) const { return absl::StrCat(recipe.*f); }
    std::string operator()(bool Recipe::*f) const { return recipe.*f ? "true" : "false"; }
    std::string operator()(std::vector<double> Recipe::*f) const { return FormatList(recipe.*f); }
  };
  return std::visit(Getter{recipe}, def.field);
}

// Prefixes an error body with its context, keeping the status code.
absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace recipe_internal

using recipe_internal::FieldText;
using recipe_internal::KeyDef;
using recipe_internal::Keys;

namespace {

// The values each non-enumerated key accepts, as ResolveRecipe checks them (for the README).
const std::map<std::string, std::string>& AllowedText() {
  static const auto* text = new std::map<std::string, std::string>{
      {"dataset", "`fashion-mnist`, `cifar10`, `cifar100`, `imagenet`, `imagefolder`, `tensors`"},
      {"data_dir",
       "a folder; for `tensors` the file (worker `--data-dir` / `QSR_DATA_DIR` override it)"},
      {"model_path",
       "a TorchScript file, required with `model: torchscript` (worker `--model-path` overrides "
       "it)"},
      {"image_size", "0 to 4096 (0 = 224)"},
      {"max_lr", "> 0"},
      {"min_lr", "0 to `max_lr`"},
      {"momentum", "[0, 1); > 0 with `nesterov`"},
      {"wd", ">= 0"},
      {"beta1", "[0, 1)"},
      {"beta2", "[0, 1)"},
      {"eps", "> 0"},
      {"decay_points", "ascending epochs >= 0, e.g. `[30, 60, 80]`"},
      {"gamma", "(0, 1]"},
      {"warmup_epochs", ">= 0"},
      {"warmup_steps", ">= 0 or -1; at most the schedule's steps"},
      {"epochs", ">= 1"},
      {"epochs_for_sche",
       ">= 1, or -1; below `epochs` the steps past it run at `min_lr` with H = 1"},
      {"steps_per_epoch", ">= 1, or -1 (needs a dataset of known size)"},
      {"total_batch_size", "> 0, divisible by `workers` x `physical_batch_size`"},
      {"physical_batch_size", ">= 1, or -1"},
      {"seed", "any integer"},
      {"init_model_by_seed", ">= 0, or -1 with `init_model_path`"},
      {"alpha", ">= 0"},
      {"power", "> 0"},
      {"min_h", ">= 1"},
      {"init_h", ">= 1"},
      {"workers", ">= 1"},
      {"min_workers", "1 to `workers`"},
      {"max_workers", ">= `workers`, or -1"},
      {"eval_batch_size", ">= 1"},
      {"label_smoothing", "[0, 1)"},
      {"gradient_clipping", ">= 0"},
      {"avg_m", "`true` only with `adamw` / `localadamw`"},
      {"avg_v", "`true` only with `adamw` / `localadamw`"},
      {"sync_overlap", "0 to 1; > 0 only with `localsgd` / `localadamw`"},
      {"base", "> 1"},
      {"bn_batches", ">= 1"},
      {"post_local_epoch", "0 to `epochs`, or -1; local optimizers only"},
      {"sync_budget", "[0, 1]"},
      {"nw", "0 to 64"},
      {"bucket_mb", "0 to 4096 (0 = one all-reduce after backward)"},
      {"mixup_alpha", ">= 0"},
      {"strong_aug", "`true` only with `cifar10`, `cifar100`, `imagenet`, `imagefolder`"},
      {"rand_aug_severity", "1 to 10"},
      {"rand_aug_depth", "1 to 16"},
      {"save_freq", ">= 0"},
      {"resume_from_epoch", "0 to `epochs` - 1, or -1"},
      {"resume_from_step", "0 to total steps - 1, or -1"},
      {"resume_pth", "a model checkpoint file"},
      {"optimizer_resume_pth", "an optimizer checkpoint file, or a folder of `rank=R.pt`"},
      {"init_model_path",
       "a qsr checkpoint, a `torch.save`d state_dict (zip format) or a TorchScript file"},
      {"checkpoint_dir", "a folder shared by the workers"},
      {"resume", "`latest`, a `MANIFEST.json` or `step=S` folder, or empty"},
  };
  return *text;
}

std::string MarkdownCell(std::string text) { return absl::StrReplaceAll(text, {{"|", "\\|"}}); }

}  // namespace

std::string RecipeKeysMarkdown() {
  const Recipe defaults;
  std::string out = "| key | meaning | default | allowed values |\n|---|---|---|---|\n";
  for (const KeyDef& def : Keys()) {
    std::string allowed;
    if (!def.allowed.empty()) {
      allowed = "`" + absl::StrJoin(def.allowed, "`, `") + "`";
    } else if (std::holds_alternative<bool Recipe::*>(def.field)) {
      auto it = AllowedText().find(def.name);
      allowed = it != AllowedText().end() ? it->second : "`true`, `false`";
    } else if (auto it = AllowedText().find(def.name); it != AllowedText().end()) {
      allowed = it->second;
    }
    std::string default_text = FieldText(defaults, def);
    default_text = default_text.empty() ? "(empty)" : "`" + default_text + "`";
    absl::StrAppend(&out, "| `", def.name, "` | ", MarkdownCell(def.help), " | ", default_text,
                    " | ", MarkdownCell(allowed), " |\n");
  }
  return out;
}

}  // namespace qsr
