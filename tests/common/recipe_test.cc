#include "common/recipe.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

constexpr char kFullRecipe[] = R"(# every key
model: mlp
dataset: fashion-mnist
data_dir: /data/fm
optimizer: localadamw
max_lr: 0.008
min_lr: 1.0e-5
momentum: 0.5
nesterov: yes
wd: 0.05
beta1: 0.8
beta2: 0.98
eps: 1e-6
scheduler: step
decay_points: [30, 60.5]
gamma: 0.2
warmup_epochs: 2.5
warmup_steps: 40
epochs: 90
epochs_for_sche: 100
steps_per_epoch: 50
total_batch_size: 256
physical_batch_size: 32
seed: 7
init_model_by_seed: 11
alpha: 0.0175
power: 3
min_h: 2
init_h: 4
workers: 4
eval_batch_size: 500
)";

TEST(RecipeTest, ParsesEveryKey) {
  absl::StatusOr<Recipe> parsed = ParseRecipeYaml(kFullRecipe, "full.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Recipe& r = *parsed;
  EXPECT_EQ(r.model, "mlp");
  EXPECT_EQ(r.dataset, "fashion-mnist");
  EXPECT_EQ(r.data_dir, "/data/fm");
  EXPECT_EQ(r.optimizer, "localadamw");
  EXPECT_DOUBLE_EQ(r.max_lr, 0.008);
  EXPECT_DOUBLE_EQ(r.min_lr, 1e-5);
  EXPECT_DOUBLE_EQ(r.momentum, 0.5);
  EXPECT_TRUE(r.nesterov);
  EXPECT_DOUBLE_EQ(r.wd, 0.05);
  EXPECT_DOUBLE_EQ(r.beta1, 0.8);
  EXPECT_DOUBLE_EQ(r.beta2, 0.98);
  EXPECT_DOUBLE_EQ(r.eps, 1e-6);
  EXPECT_EQ(r.scheduler, "step");
  EXPECT_EQ(r.decay_points, (std::vector<double>{30, 60.5}));
  EXPECT_DOUBLE_EQ(r.gamma, 0.2);
  EXPECT_DOUBLE_EQ(r.warmup_epochs, 2.5);
  EXPECT_EQ(r.warmup_steps, 40);
  EXPECT_EQ(r.epochs, 90);
  EXPECT_EQ(r.epochs_for_sche, 100);
  EXPECT_EQ(r.steps_per_epoch, 50);
  EXPECT_EQ(r.total_batch_size, 256);
  EXPECT_EQ(r.physical_batch_size, 32);
  EXPECT_EQ(r.seed, 7);
  EXPECT_EQ(r.init_model_by_seed, 11);
  EXPECT_DOUBLE_EQ(r.alpha, 0.0175);
  EXPECT_DOUBLE_EQ(r.power, 3);
  EXPECT_EQ(r.min_h, 2);
  EXPECT_EQ(r.init_h, 4);
  EXPECT_EQ(r.workers, 4);
  EXPECT_EQ(r.eval_batch_size, 500);
  EXPECT_TRUE(r.Adam());
  EXPECT_FALSE(r.DataParallel());

  Recipe resolved = r;
  ASSERT_TRUE(ResolveRecipe(resolved).ok());
  EXPECT_EQ(resolved.physical_batch_size, 32);  // 64 per worker in 2 micro-batches
  EXPECT_EQ(resolved.ScheduleSteps(), 5000);
  EXPECT_EQ(resolved.TotalSteps(), 4500);
}

TEST(RecipeTest, DefaultsResolveWithFashionMnist) {
  Recipe r;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  EXPECT_EQ(r.steps_per_epoch, 468);  // floor(60000 / 128)
  EXPECT_EQ(r.epochs_for_sche, 5);
  EXPECT_EQ(r.warmup_steps, 0);
  EXPECT_EQ(r.physical_batch_size, 128);
  EXPECT_EQ(r.TotalSteps(), 5 * 468);

  const std::string once = RecipeToYaml(r);
  ASSERT_TRUE(ResolveRecipe(r).ok());  // idempotent
  EXPECT_EQ(RecipeToYaml(r), once);
}

TEST(RecipeTest, DerivesWarmupStepsAndPhysicalBatch) {
  Recipe r;
  r.warmup_epochs = 0.5;
  r.workers = 4;
  ASSERT_TRUE(ResolveRecipe(r).ok());
  EXPECT_EQ(r.warmup_steps, 234);        // round(0.5 * 468)
  EXPECT_EQ(r.physical_batch_size, 32);  // 128 / 4 workers: one micro-batch each
}

TEST(RecipeTest, EmptyValuesForStringsAndLists) {
  absl::StatusOr<Recipe> r = ParseRecipeYaml("data_dir:\ndecay_points: []\n", "r.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->data_dir, "");
  EXPECT_TRUE(r->decay_points.empty());
}

TEST(RecipeTest, UnknownKeyIsNamedWithASuggestion) {
  absl::StatusOr<Recipe> r = ParseRecipeYaml("epochs: 3\nmax_lrr: 0.1\n", "recipe.yaml");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(r.status()),
            "recipe.yaml:2: unknown key \"max_lrr\" (did you mean \"max_lr\"?)");
  EXPECT_EQ(Message(ParseRecipeYaml("zzzzzz: 1\n", "r.yaml").status()),
            "r.yaml:1: unknown key \"zzzzzz\"");
}

TEST(RecipeTest, WrongTypeNamesKeyAndValue) {
  EXPECT_EQ(Message(ParseRecipeYaml("max_lr: abc\n", "recipe.yaml").status()),
            "recipe.yaml:1: key \"max_lr\": value \"abc\" is not a number");
  EXPECT_EQ(Message(ParseRecipeYaml("epochs: 2.5\n", "r.yaml").status()),
            "r.yaml:1: key \"epochs\": value \"2.5\" is not an integer");
  EXPECT_THAT(Message(ParseRecipeYaml("nesterov: maybe\n", "r.yaml").status()),
              HasSubstr("key \"nesterov\": value \"maybe\" is not a boolean"));
  EXPECT_THAT(Message(ParseRecipeYaml("max_lr: [1, 2]\n", "r.yaml").status()),
              HasSubstr("key \"max_lr\": must be a single value"));
  EXPECT_THAT(Message(ParseRecipeYaml("decay_points: [30, x]\n", "r.yaml").status()),
              AllOf(HasSubstr("decay_points"), HasSubstr("\"x\"")));
  EXPECT_THAT(Message(ParseRecipeYaml("epochs:\n", "r.yaml").status()),
              HasSubstr("key \"epochs\": has no value"));
}

TEST(RecipeTest, ChoiceKeysListWhatIsAllowed) {
  EXPECT_EQ(Message(ParseRecipeYaml("optimizer: foo\n", "r.yaml").status()),
            "r.yaml:1: key \"optimizer\": value \"foo\" is not one of sgd, localsgd, adamw, "
            "localadamw");
  EXPECT_THAT(Message(ParseRecipeYaml("model: resnet19\n", "r.yaml").status()),
              HasSubstr("is not one of mlp, cnn, resnet18"));
  EXPECT_THAT(Message(ParseRecipeYaml("scheduler: exp\n", "r.yaml").status()),
              HasSubstr("is not one of cosine, linear, step, constant"));
}

TEST(RecipeTest, BucketSizeAndPrecision) {
  Recipe defaults;
  EXPECT_DOUBLE_EQ(defaults.bucket_mb, 25.0);
  EXPECT_EQ(defaults.precision, "fp32");
  absl::StatusOr<Recipe> r = ParseRecipeYaml("bucket_mb: 0.5\nprecision: bf16\n", "r.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->bucket_mb, 0.5);
  EXPECT_EQ(r->precision, "bf16");
  ASSERT_TRUE(ResolveRecipe(*r).ok());
  // fp16 parses (the worker refuses it where it cannot train, worker/precision.h); others do not.
  absl::StatusOr<Recipe> fp16 = ParseRecipeYaml("precision: fp16\n", "r.yaml");
  ASSERT_TRUE(fp16.ok()) << fp16.status();
  EXPECT_EQ(fp16->precision, "fp16");
  EXPECT_EQ(Message(ParseRecipeYaml("precision: fp8\n", "r.yaml").status()),
            "r.yaml:1: key \"precision\": value \"fp8\" is not one of fp32, bf16, fp16");
  Recipe negative;
  negative.bucket_mb = -1;
  EXPECT_EQ(Message(ResolveRecipe(negative)),
            "key \"bucket_mb\": value -1 must be in [0, 4096] (0 = one all-reduce after backward)");
  Recipe flag;
  EXPECT_THAT(Message(SetRecipeKey(flag, "bucket-mb", "lots")), HasSubstr("not a number"));
}

TEST(RecipeTest, MalformedYamlNamesFileAndLine) {
  absl::StatusOr<Recipe> r = ParseRecipeYaml("epochs: 3\nmax_lr: [0.1\n", "bad.yaml");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(r.status()), AllOf(HasSubstr("bad.yaml:"), HasSubstr("malformed YAML")));
}

TEST(RecipeTest, TopLevelMustBeAMap) {
  EXPECT_THAT(Message(ParseRecipeYaml("- 1\n- 2\n", "r.yaml").status()),
              HasSubstr("top level must be a map"));
  EXPECT_THAT(Message(ParseRecipeYaml("", "r.yaml").status()),
              HasSubstr("top level must be a map"));
}

TEST(RecipeTest, DuplicateKeyIsAnError) {
  EXPECT_EQ(Message(ParseRecipeYaml("epochs: 3\nepochs: 4\n", "r.yaml").status()),
            "r.yaml:2: duplicate key \"epochs\"");
}

TEST(RecipeTest, MinLrAboveMaxLr) {
  Recipe r;
  r.min_lr = 0.5;
  r.max_lr = 0.1;
  EXPECT_EQ(Message(ResolveRecipe(r)), "key \"min_lr\": value 0.5 must be <= max_lr (0.1)");
}

TEST(RecipeTest, IndivisibleBatchNamesTheThreeKeys) {
  Recipe r;
  r.total_batch_size = 128;
  r.workers = 3;
  absl::Status s = ResolveRecipe(r);
  EXPECT_EQ(Message(s),
            "total_batch_size (128) must be divisible by workers (3) * physical_batch_size (42)");

  Recipe accum;
  accum.workers = 2;
  accum.physical_batch_size = 48;
  EXPECT_THAT(Message(ResolveRecipe(accum)),
              AllOf(HasSubstr("total_batch_size (128)"), HasSubstr("workers (2)"),
                    HasSubstr("physical_batch_size (48)")));
}

TEST(RecipeTest, RangeChecksNameKeyAndValue) {
  auto resolve = [](void (*edit)(Recipe&)) {
    Recipe r;
    edit(r);
    return Message(ResolveRecipe(r));
  };
  EXPECT_EQ(resolve([](Recipe& r) { r.momentum = 1; }),
            "key \"momentum\": value 1 must be in [0, 1)");
  EXPECT_EQ(resolve([](Recipe& r) { r.workers = 0; }), "key \"workers\": value 0 must be >= 1");
  EXPECT_THAT(resolve([](Recipe& r) { r.max_lr = 0; }), HasSubstr("\"max_lr\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.epochs = 0; }), HasSubstr("\"epochs\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.epochs_for_sche = 0; }), HasSubstr("\"epochs_for_sche\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.warmup_epochs = 6; }), HasSubstr("\"warmup_steps\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.beta2 = 1; }), HasSubstr("\"beta2\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.eps = 0; }), HasSubstr("\"eps\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.wd = -1; }), HasSubstr("\"wd\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.alpha = -1; }), HasSubstr("\"alpha\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.power = 0; }), HasSubstr("\"power\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.min_h = 0; }), HasSubstr("\"min_h\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.init_h = 0; }), HasSubstr("\"init_h\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.gamma = 0; }), HasSubstr("\"gamma\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.eval_batch_size = 0; }), HasSubstr("\"eval_batch_size\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.decay_points = {60, 30}; }), HasSubstr("ascend"));
  EXPECT_THAT(resolve([](Recipe& r) { r.decay_points = {-1}; }), HasSubstr("\"decay_points\""));
  EXPECT_THAT(resolve([](Recipe& r) { r.nesterov = true, r.momentum = 0; }), HasSubstr("nesterov"));
  EXPECT_THAT(resolve([](Recipe& r) { r.optimizer = "foo"; }), HasSubstr("is not one of"));
  EXPECT_THAT(resolve([](Recipe& r) { r.total_batch_size = 65536; }),
              HasSubstr("larger than the 60000 training examples"));
  EXPECT_THAT(resolve([](Recipe& r) { r.dataset = "imagenette"; }),
              AllOf(HasSubstr("imagenette"), HasSubstr("fashion-mnist"), HasSubstr("imagenet")));
  // ImageNet knows its size (1,281,167 / 128 steps); any other folder tree does not.
  Recipe imagenet;
  imagenet.dataset = "imagenet";
  ASSERT_TRUE(ResolveRecipe(imagenet).ok());
  EXPECT_EQ(imagenet.steps_per_epoch, 1281167 / 128);
  EXPECT_THAT(resolve([](Recipe& r) { r.dataset = "imagefolder"; }),
              AllOf(HasSubstr("steps_per_epoch"), HasSubstr("imagefolder")));
  EXPECT_THAT(resolve([](Recipe& r) { r.image_size = -1; }), HasSubstr("\"image_size\""));
}

TEST(RecipeTest, StepSchedulerWithoutDecayPointsIsAllowed) {
  Recipe r;
  r.scheduler = "step";
  EXPECT_TRUE(ResolveRecipe(r).ok());
}

TEST(RecipeTest, ToYamlRoundTrips) {
  absl::StatusOr<Recipe> r = ParseRecipeYaml(kFullRecipe, "full.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  r->max_lr = 0.1 + 0.2;  // needs 17 digits
  r->data_dir = "";
  r->dataset = "true";  // a string that YAML would read as a boolean unless quoted
  const std::string yaml = RecipeToYaml(*r);
  EXPECT_THAT(yaml, HasSubstr("max_lr: 0.30000000000000004\n"));
  absl::StatusOr<Recipe> again = ParseRecipeYaml(yaml, "dump.yaml");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
  EXPECT_EQ(RecipeToYaml(*again), yaml);
  EXPECT_EQ(again->max_lr, r->max_lr);
  EXPECT_EQ(again->data_dir, "");
  EXPECT_EQ(again->dataset, "true");
  EXPECT_EQ(again->decay_points, r->decay_points);
  EXPECT_TRUE(again->nesterov);
}

// A coordinator restarted on its state dir re-reads the resolved recipe it journaled and
// compares it with the one its flags give: every shipped recipe, resolved, must come back the
// same from its own YAML, or the restart warns that the recipe changed when it did not.
TEST(RecipeTest, AResolvedRecipeComesBackFromItsYamlUnchanged) {
  int checked = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(std::string(QSR_SOURCE_DIR) + "/recipes")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    absl::StatusOr<Recipe> r = LoadRecipeFile(entry.path().string());
    ASSERT_TRUE(r.ok()) << r.status();
    if (!ResolveRecipe(*r).ok()) continue;  // needs a data set this machine lacks
    const std::string yaml = RecipeToYaml(*r);
    absl::StatusOr<Recipe> again = ParseRecipeYaml(yaml, "/elsewhere/journal");
    ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
    ASSERT_TRUE(ResolveRecipe(*again).ok());
    EXPECT_EQ(RecipeToYaml(*again), yaml);
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(RecipeTest, SetRecipeKeyAcceptsKebabAndSnake) {
  Recipe r;
  ASSERT_TRUE(SetRecipeKey(r, "max-lr", "0.25").ok());
  ASSERT_TRUE(SetRecipeKey(r, "min_lr", "0.01").ok());
  ASSERT_TRUE(SetRecipeKey(r, "decay-points", "30,60").ok());
  ASSERT_TRUE(SetRecipeKey(r, "nesterov", "1").ok());
  EXPECT_DOUBLE_EQ(r.max_lr, 0.25);
  EXPECT_DOUBLE_EQ(r.min_lr, 0.01);
  EXPECT_EQ(r.decay_points, (std::vector<double>{30, 60}));
  EXPECT_TRUE(r.nesterov);
  ASSERT_TRUE(SetRecipeKey(r, "nesterov", "no").ok());
  EXPECT_FALSE(r.nesterov);

  EXPECT_EQ(Message(SetRecipeKey(r, "max-lr", "abc")),
            "key \"max_lr\": value \"abc\" is not a number");
  EXPECT_EQ(Message(SetRecipeKey(r, "max-lrr", "1")),
            "unknown key \"max_lrr\" (did you mean \"max_lr\"?)");
  EXPECT_EQ(Message(SetRecipeKeyAs(r, "max-lr", "abc", "flag --max-lr")),
            "flag --max-lr: value \"abc\" is not a number");
  EXPECT_DOUBLE_EQ(r.max_lr, 0.25);  // a failed set leaves the value alone
}

TEST(RecipeTest, KeyQueriesAndHelp) {
  EXPECT_TRUE(IsRecipeKey("max-lr"));
  EXPECT_TRUE(IsRecipeKey("epochs_for_sche"));
  EXPECT_FALSE(IsRecipeKey("recipe"));
  EXPECT_TRUE(IsRecipeBoolKey("nesterov"));
  EXPECT_FALSE(IsRecipeBoolKey("max-lr"));

  const auto help = RecipeKeyHelp();
  // Every key of the table: the method's options, min/max_workers, bucket_mb, precision,
  // sync_precision, memory_format, sync_overlap, model_path and RandAugment's strong_aug,
  // rand_aug_severity and rand_aug_depth.
  EXPECT_EQ(help.size(), 65u);
  bool found = false;
  for (const auto& [name, text] : help) {
    EXPECT_EQ(name.find('_'), std::string::npos) << name;
    if (name == "max-lr") {
      found = true;
      EXPECT_THAT(text, HasSubstr("(default: 0.1)"));
    }
  }
  EXPECT_TRUE(found);
}

TEST(RecipeTest, SyncPrecisionTakesFp32OrBf16) {
  Recipe recipe;
  EXPECT_EQ(recipe.sync_precision, "fp32");
  ASSERT_TRUE(SetRecipeKey(recipe, "sync-precision", "bf16").ok());
  EXPECT_EQ(recipe.sync_precision, "bf16");
  absl::StatusOr<Recipe> parsed = ParseRecipeYaml("sync_precision: fp16\n", "test.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("sync_precision"));
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("bf16"));
}

TEST(RecipeTest, SyncOverlapIsAShareInZeroOneForLocalMethods) {
  absl::StatusOr<Recipe> parsed =
      ParseRecipeYaml("optimizer: localsgd\nsync_overlap: 0.5\n", "test.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->sync_overlap, 0.5);
  EXPECT_TRUE(ResolveRecipe(*parsed).ok());
  for (double bad : {-0.1, 1.5}) {
    Recipe recipe;
    recipe.optimizer = "localsgd";
    recipe.sync_overlap = bad;
    const absl::Status status = ResolveRecipe(recipe);
    ASSERT_FALSE(status.ok()) << bad;
    EXPECT_THAT(std::string(status.message()), HasSubstr("sync_overlap"));
    EXPECT_THAT(std::string(status.message()), HasSubstr("in [0, 1]"));
  }
  for (const char* optimizer : {"sgd", "adamw"}) {
    Recipe recipe;
    recipe.optimizer = optimizer;
    recipe.sync_overlap = 1;
    const absl::Status status = ResolveRecipe(recipe);
    ASSERT_FALSE(status.ok()) << optimizer;
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr("sync_overlap"));
    EXPECT_THAT(std::string(status.message()), HasSubstr("localsgd or localadamw"));
  }
  EXPECT_THAT(RecipeKeysMarkdown(), HasSubstr("0 to 1; > 0 only with `localsgd` / `localadamw`"));
}

TEST(RecipeTest, LoadRecipeFile) {
  const std::string path = ::testing::TempDir() + "/recipe_test.yaml";
  {
    std::ofstream out(path);
    out << "epochs: 12\nalpha: 0.01\n";
  }
  absl::StatusOr<Recipe> r = LoadRecipeFile(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->epochs, 12);
  std::remove(path.c_str());
  EXPECT_THAT(Message(LoadRecipeFile(path).status()), HasSubstr(path));
}

}  // namespace
}  // namespace qsr

namespace qsr {
namespace {

// The README's recipe table is generated from the key table, so it lists every key with its
// default and allowed values. On a mismatch, paste the printed table between the markers.
TEST(RecipeKeysMarkdownTest, ReadmeHasTheGeneratedTable) {
  const std::string table = RecipeKeysMarkdown();
  std::ifstream in(std::string(QSR_SOURCE_DIR) + "/README.md");
  const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string begin = "<!-- recipe-keys:begin (generated: RecipeKeysMarkdown) -->\n";
  const std::string end = "<!-- recipe-keys:end -->";
  const size_t b = readme.find(begin);
  const size_t e = readme.find(end);
  ASSERT_NE(b, std::string::npos) << "README.md lacks the marker " << begin;
  ASSERT_NE(e, std::string::npos);
  EXPECT_EQ(readme.substr(b + begin.size(), e - b - begin.size()), table)
      << "README.md's recipe table is out of date; it should be:\n"
      << table;
  // Every key documented, each with a meaning and allowed values.
  for (const auto& [key, help] : RecipeKeyHelp()) {
    std::string snake = key;
    std::replace(snake.begin(), snake.end(), '-', '_');
    EXPECT_NE(table.find("| `" + snake + "` | "), std::string::npos) << snake;
  }
  EXPECT_EQ(table.find("|  |"), std::string::npos) << "a key without allowed values:\n" << table;
}

}  // namespace
}  // namespace qsr

namespace qsr {
namespace {

TEST(RecipeTest, ModelPathGoesWithTorchScriptOnly) {
  Recipe r;
  r.model = "torchscript";
  absl::Status s = ResolveRecipe(r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("model_path"), std::string::npos) << s;
  EXPECT_NE(s.message().find("torch.jit"), std::string::npos) << s;
  r.model_path = "/models/net.ts";
  EXPECT_TRUE(ResolveRecipe(r).ok());
  Recipe cnn;
  cnn.model_path = "/models/net.ts";
  s = ResolveRecipe(cnn);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("empty with model cnn"), std::string::npos) << s;
  absl::StatusOr<Recipe> parsed =
      ParseRecipeYaml("model: torchscript\nmodel_path: net.ts\n", "test recipe");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->model_path, "net.ts");
}

// RandAugment's keys carry the authors' names and defaults (severity 10, depth 2); bad values and
// datasets RandAugment cannot work on are refused naming the key and what is allowed.
TEST(RecipeTest, RandAugmentKeys) {
  absl::StatusOr<Recipe> parsed = ParseRecipeYaml(
      "dataset: cifar10\nstrong_aug: 1\nrand_aug_severity: 7\nrand_aug_depth: 3\n", "test");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->strong_aug);
  EXPECT_EQ(parsed->rand_aug_severity, 7);
  EXPECT_EQ(parsed->rand_aug_depth, 3);
  EXPECT_EQ(parsed->mixup_alpha, 0.0);  // not coupled to strong_aug
  EXPECT_TRUE(ResolveRecipe(*parsed).ok());

  const Recipe defaults;
  EXPECT_FALSE(defaults.strong_aug);
  EXPECT_EQ(defaults.rand_aug_severity, 10);
  EXPECT_EQ(defaults.rand_aug_depth, 2);

  struct Bad {
    const char* key;
    const char* value;
    const char* message;
  };
  for (const Bad& bad : std::vector<Bad>{{"rand_aug_severity", "0", "in [1, 10]"},
                                         {"rand_aug_severity", "11", "in [1, 10]"},
                                         {"rand_aug_depth", "0", "in [1, 16]"},
                                         {"rand_aug_depth", "17", "in [1, 16]"}}) {
    Recipe r;
    r.dataset = "cifar10";
    ASSERT_TRUE(SetRecipeKey(r, bad.key, bad.value).ok());
    const absl::Status s = ResolveRecipe(r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad.key << " " << bad.value;
    EXPECT_NE(s.message().find(bad.key), std::string::npos) << s;
    EXPECT_NE(s.message().find(bad.message), std::string::npos) << s;
  }
  Recipe fmnist;  // fashion-mnist: 1-channel float images, not RandAugment's 8-bit RGB
  fmnist.strong_aug = true;
  absl::Status s = ResolveRecipe(fmnist);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("strong_aug"), std::string::npos) << s;
  EXPECT_NE(s.message().find("cifar10, cifar100, imagenet, imagefolder"), std::string::npos) << s;
  EXPECT_FALSE(SetRecipeKey(fmnist, "strong-aug", "maybe").ok());
}

}  // namespace
}  // namespace qsr
