#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/recipe.h"
#include "common/recipe_keys.h"
#include "common/round_planner.h"

// Recipe validation: ResolveRecipe's checks and the values it derives (batch, steps, alpha from
// a sync budget), and the table of known datasets.
namespace qsr {

using recipe_internal::FieldText;
using recipe_internal::FormatDouble;
using recipe_internal::KeyDef;
using recipe_internal::Keys;
using recipe_internal::QuoteKey;
using recipe_internal::SetField;
using recipe_internal::WithContext;

namespace {

struct KnownDataset {
  const char* name;
  int64_t train_examples;
};
// clang-format off
constexpr KnownDataset kDatasets[] = {
    {"fashion-mnist", 60000},
    {"cifar10", 50000},
    {"cifar100", 50000},
    {"imagenet", 1281167},  // ILSVRC-2012 train
    {"imagefolder", -1},    // any class-per-folder tree: its size is not known here
    {"tensors", -1}};       // a torch.save file of tensors: read only by the workers
// clang-format on

// `key "momentum": value 1 must be in [0, 1)`.
template <typename T>
absl::Status Invalid(absl::string_view key, T value, absl::string_view requirement) {
  std::string text;
  if constexpr (std::is_floating_point_v<T>) {
    text = FormatDouble(value);
  } else {
    text = absl::StrCat(value);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("key ", QuoteKey(key), ": value ", text, " must be ", requirement));
}

// Collects the first failed check, so each check below stays one line.
class Checker {
 public:
  template <typename T>
  void Require(bool ok, absl::string_view key, T value, absl::string_view requirement) {
    if (status_.ok() && !ok) status_ = Invalid(key, value, requirement);
  }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// String keys with a fixed set of values may also have been assigned directly in code.
absl::Status CheckAllowedValues(const Recipe& recipe) {
  for (const KeyDef& def : Keys()) {
    if (def.allowed.empty()) continue;
    Recipe scratch;
    absl::Status s = SetField(scratch, def, FieldText(recipe, def));
    if (!s.ok()) return WithContext(s, absl::StrCat("key ", QuoteKey(def.name)));
  }
  return absl::OkStatus();
}

// Batch sizes and workers; fills physical_batch_size.
absl::Status ResolveBatch(Recipe& r) {
  Checker c;
  c.Require(r.workers >= 1, "workers", r.workers, ">= 1");
  c.Require(r.total_batch_size > 0, "total_batch_size", r.total_batch_size, "> 0");
  c.Require(r.physical_batch_size >= 1 || r.physical_batch_size == -1, "physical_batch_size",
            r.physical_batch_size, ">= 1 or -1 (total_batch_size / workers)");
  c.Require(r.min_workers >= 1 && r.min_workers <= r.workers, "min_workers", r.min_workers,
            absl::StrCat("in [1, workers = ", r.workers, "]"));
  c.Require(r.max_workers == -1 || r.max_workers >= r.workers, "max_workers", r.max_workers,
            absl::StrCat(">= workers (", r.workers, "), or -1 (= workers)"));
  if (!c.status().ok()) return c.status();
  if (r.max_workers == -1) r.max_workers = r.workers;
  if (r.physical_batch_size == -1) r.physical_batch_size = r.total_batch_size / r.workers;
  if (r.physical_batch_size < 1 || r.total_batch_size % (r.workers * r.physical_batch_size) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("total_batch_size (", r.total_batch_size, ") must be divisible by workers (",
                     r.workers, ") * physical_batch_size (", r.physical_batch_size, ")"));
  }
  return absl::OkStatus();
}

// Epochs and steps; fills steps_per_epoch, epochs_for_sche and warmup_steps.
absl::Status ResolveSteps(Recipe& r) {
  absl::StatusOr<int64_t> examples = DatasetTrainExamples(r.dataset);
  if (!examples.ok()) return examples.status();
  Checker c;
  c.Require(r.epochs >= 1, "epochs", r.epochs, ">= 1");
  // epochs > epochs_for_sche trains past the schedule's end T as the authors' resume runs do:
  // the LR stays at min_lr there and every round is one step (H = max(min(.., T - t), 1) = 1).
  c.Require(r.epochs_for_sche >= 1 || r.epochs_for_sche == -1, "epochs_for_sche", r.epochs_for_sche,
            ">= 1 or -1 (epochs)");
  c.Require(r.steps_per_epoch >= 1 || r.steps_per_epoch == -1, "steps_per_epoch", r.steps_per_epoch,
            ">= 1 or -1 (train examples / total_batch_size)");
  c.Require(r.warmup_epochs >= 0, "warmup_epochs", r.warmup_epochs, ">= 0");
  c.Require(r.warmup_steps >= 0 || r.warmup_steps == -1, "warmup_steps", r.warmup_steps,
            ">= 0 or -1 (warmup_epochs * steps_per_epoch)");
  if (!c.status().ok()) return c.status();

  if (r.steps_per_epoch == -1 && *examples < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("key \"steps_per_epoch\": dataset ", r.dataset,
                     " does not know its size; set steps_per_epoch (>= 1)"));
  }
  if (r.steps_per_epoch == -1) {
    const int64_t derived = *examples / r.total_batch_size;
    if (derived < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("total_batch_size (", r.total_batch_size, ") is larger than the ", *examples,
                       " training examples of ", r.dataset, ": an epoch would have no steps"));
    }
    r.steps_per_epoch = derived;
  }
  if (r.epochs_for_sche == -1) r.epochs_for_sche = r.epochs;
  // T = epochs_for_sche * steps_per_epoch must fit in an int64 with room to add a round.
  for (const auto& [key, epochs] :
       {std::pair<const char*, int64_t>{"epochs_for_sche", r.epochs_for_sche},
        {"epochs", r.epochs}}) {
    if (epochs > std::numeric_limits<int64_t>::max() / 4 / r.steps_per_epoch) {
      return absl::InvalidArgumentError(absl::StrCat(key, " (", epochs, ") * steps_per_epoch (",
                                                     r.steps_per_epoch, ") is too many steps"));
    }
  }
  if (r.warmup_steps == -1) {
    const double steps = std::round(r.warmup_epochs * static_cast<double>(r.steps_per_epoch));
    // Anything past T is rejected below; clamp first so the cast cannot overflow.
    r.warmup_steps =
        static_cast<int64_t>(std::min(steps, static_cast<double>(r.ScheduleSteps()) + 1));
  }
  c.Require(r.warmup_steps <= r.ScheduleSteps(), "warmup_steps", r.warmup_steps,
            absl::StrCat("<= epochs_for_sche * steps_per_epoch (", r.ScheduleSteps(), ")"));
  return c.status();
}

// Every key that derives nothing: ranges and cross-key constraints. First the optimizer and the
// schedule.
absl::Status CheckOptimizerRanges(const Recipe& r) {
  Checker c;
  c.Require(r.max_lr > 0, "max_lr", r.max_lr, "> 0");
  c.Require(r.min_lr >= 0, "min_lr", r.min_lr, ">= 0");
  c.Require(r.min_lr <= r.max_lr, "min_lr", r.min_lr,
            absl::StrCat("<= max_lr (", FormatDouble(r.max_lr), ")"));
  c.Require(r.momentum >= 0 && r.momentum < 1, "momentum", r.momentum, "in [0, 1)");
  c.Require(!r.nesterov || r.momentum > 0, "momentum", r.momentum, "> 0 when nesterov is true");
  c.Require(r.wd >= 0, "wd", r.wd, ">= 0");
  c.Require(r.beta1 >= 0 && r.beta1 < 1, "beta1", r.beta1, "in [0, 1)");
  c.Require(r.beta2 >= 0 && r.beta2 < 1, "beta2", r.beta2, "in [0, 1)");
  c.Require(r.eps > 0, "eps", r.eps, "> 0");
  c.Require(r.gamma > 0 && r.gamma <= 1, "gamma", r.gamma, "in (0, 1]");
  for (size_t i = 0; i < r.decay_points.size(); ++i) {
    c.Require(r.decay_points[i] >= 0, "decay_points", r.decay_points[i], ">= 0");
    if (i > 0) {
      c.Require(r.decay_points[i] > r.decay_points[i - 1], "decay_points", r.decay_points[i],
                absl::StrCat("> the previous decay point (", FormatDouble(r.decay_points[i - 1]),
                             "): decay points must ascend"));
    }
  }
  return c.status();
}

// The sync rule, evaluation, data and model keys.
absl::Status CheckRunRanges(const Recipe& r) {
  Checker c;
  c.Require(r.alpha >= 0, "alpha", r.alpha, ">= 0");
  c.Require(r.power > 0, "power", r.power, "> 0");
  c.Require(r.min_h >= 1, "min_h", r.min_h, ">= 1");
  c.Require(r.init_h >= 1, "init_h", r.init_h, ">= 1");
  c.Require(r.eval_batch_size >= 1, "eval_batch_size", r.eval_batch_size, ">= 1");
  c.Require(r.label_smoothing >= 0 && r.label_smoothing < 1, "label_smoothing", r.label_smoothing,
            "in [0, 1)");
  c.Require(r.gradient_clipping >= 0, "gradient_clipping", r.gradient_clipping,
            ">= 0 (0 = no clipping)");
  c.Require(
      !(r.avg_m || r.avg_v) || r.Adam(), "avg_m", r.avg_m || r.avg_v,
      "false unless the optimizer is adamw or localadamw (avg_m and avg_v average Adam moments)");
  c.Require(r.sync_overlap >= 0 && r.sync_overlap <= 1, "sync_overlap", r.sync_overlap,
            "in [0, 1] (the share of the next round a sync may travel through; 0 = off)");
  c.Require(r.sync_overlap == 0 || !r.DataParallel(), "sync_overlap", r.sync_overlap,
            "0 with a data-parallel optimizer (sgd, adamw: bucket_mb already overlaps their "
            "gradients with backward); > 0 needs localsgd or localadamw");
  c.Require(r.base > 1, "base", r.base, "> 1");
  c.Require(r.bn_batches >= 1, "bn_batches", r.bn_batches, ">= 1");
  c.Require(r.post_local_epoch == -1 || (r.post_local_epoch >= 0 && r.post_local_epoch <= r.epochs),
            "post_local_epoch", r.post_local_epoch,
            absl::StrCat("in [0, epochs (", r.epochs, ")] or -1"));
  c.Require(r.post_local_epoch == -1 || !r.DataParallel(), "post_local_epoch", r.post_local_epoch,
            "-1 with a data-parallel optimizer (post-local needs localsgd or localadamw)");
  c.Require(r.sync_budget >= 0 && r.sync_budget <= 1, "sync_budget", r.sync_budget,
            "in [0, 1] (0 = use alpha)");
  c.Require(r.nw >= 0 && r.nw <= 64, "nw", r.nw, "in [0, 64]");
  c.Require(r.bucket_mb >= 0 && r.bucket_mb <= 4096, "bucket_mb", r.bucket_mb,
            "in [0, 4096] (0 = one all-reduce after backward)");
  c.Require(r.mixup_alpha >= 0, "mixup_alpha", r.mixup_alpha, ">= 0 (0 = off)");
  c.Require(r.rand_aug_severity >= 1 && r.rand_aug_severity <= 10, "rand_aug_severity",
            r.rand_aug_severity, "in [1, 10] (composer's severity; 10 = strongest)");
  c.Require(r.rand_aug_depth >= 1 && r.rand_aug_depth <= 16, "rand_aug_depth", r.rand_aug_depth,
            "in [1, 16] (operations per image)");
  c.Require(!r.strong_aug || r.dataset == "cifar10" || r.dataset == "cifar100" ||
                r.dataset == "imagenet" || r.dataset == "imagefolder",
            "strong_aug", r.strong_aug,
            absl::StrCat("false with dataset ", r.dataset,
                         " (RandAugment works on 8-bit RGB images: cifar10, cifar100, imagenet, "
                         "imagefolder)"));
  c.Require(r.save_freq >= 0, "save_freq", r.save_freq, ">= 0 (0 = never)");
  c.Require(r.image_size >= 0 && r.image_size <= 4096, "image_size", r.image_size,
            "in [0, 4096] (0 = 224)");
  if (r.model == "torchscript") {
    c.Require(!r.model_path.empty(), "model_path", r.model_path,
              "a TorchScript file (torch.jit.script(model).save(path)) with model torchscript; "
              "each worker's --model-path can override it");
  } else {
    c.Require(r.model_path.empty(), "model_path", r.model_path,
              absl::StrCat("empty with model ", r.model,
                           " (model_path names a TorchScript file for model torchscript)"));
  }
  c.Require(r.init_model_by_seed >= 0 || (r.init_model_by_seed == -1 && !r.init_model_path.empty()),
            "init_model_by_seed", r.init_model_by_seed,
            ">= 0, or -1 together with init_model_path");
  c.Require(r.resume_from_epoch >= -1 && r.resume_from_epoch < r.epochs, "resume_from_epoch",
            r.resume_from_epoch, absl::StrCat("in [0, epochs (", r.epochs, ")) or -1"));
  c.Require(r.resume_from_step >= -1 && r.resume_from_step < r.TotalSteps(), "resume_from_step",
            r.resume_from_step, absl::StrCat("in [0, ", r.TotalSteps(), ") or -1"));
  return c.status();
}

// With a sync budget, alpha is the smallest value whose plan syncs at most that share of steps.
absl::Status ResolveSyncBudget(Recipe& r) {
  if (r.sync_budget <= 0 || r.DataParallel()) return absl::OkStatus();
  absl::StatusOr<double> alpha = AlphaForSyncBudget(r, r.sync_budget);
  if (!alpha.ok()) return alpha.status();
  r.alpha = *alpha;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> DatasetTrainExamples(const std::string& dataset) {
  std::vector<std::string> names;
  for (const KnownDataset& d : kDatasets) {
    if (dataset == d.name) return d.train_examples;
    names.push_back(d.name);
  }
  return absl::InvalidArgumentError(absl::StrCat("key \"dataset\": value \"", dataset,
                                                 "\" is not one of ", absl::StrJoin(names, ", ")));
}

absl::Status ResolveRecipe(Recipe& recipe) {
  absl::Status s = CheckAllowedValues(recipe);
  if (s.ok()) s = ResolveBatch(recipe);
  if (s.ok()) s = ResolveSteps(recipe);
  if (s.ok()) s = CheckOptimizerRanges(recipe);
  if (s.ok()) s = CheckRunRanges(recipe);
  if (s.ok() && recipe.resume_from_step == -1 && recipe.resume_from_epoch >= 0) {
    recipe.resume_from_step = recipe.resume_from_epoch * recipe.steps_per_epoch;
  }
  if (s.ok()) s = ResolveSyncBudget(recipe);
  return s;
}

}  // namespace qsr
