// End to end on loopback with the datasets tests can make themselves: a coordinator in process
// and 2 real qsr-worker processes training on a generated class-per-folder JPEG tree (decoded by
// the loaders' nw threads, streaming evaluation) and on CIFAR-10-format binary files (with mixup,
// and with RandAugment).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/integration/run_to_end.h"
#include "tests/integration/test_util.h"
#include "worker/data/jpeg.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;

void WriteBytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(path.parent_path());
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
}

// Class c is a noisy image of one dominant colour: learnable in a few steps.
std::vector<uint8_t> ClassPixels(int c, int w, int h, std::mt19937& rng) {
  std::uniform_int_distribution<int> noise(-40, 40);
  std::vector<uint8_t> rgb(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < rgb.size(); ++i) {
    const int base = (static_cast<int>(i % 3) == c) ? 200 : 50;
    rgb[i] = static_cast<uint8_t>(std::clamp(base + noise(rng), 0, 255));
  }
  return rgb;
}

std::unique_ptr<CoordinatorServer> RunToEnd(const Recipe& recipe, const std::string& run_dir) {
  testing::RunToEndOptions run;
  run.worker_bin = QSR_WORKER_BIN;
  run.run_id = "data";
  run.workers_timeout = absl::Seconds(180);
  return testing::RunToEnd(recipe, run_dir, run);
}

// Every round ran on both workers with identical models, as planned; returns the evaluations.
std::vector<std::string> CheckRun(const Recipe& recipe, CoordinatorServer& server,
                                  const std::string& run_dir) {
  v1::ListRoundsReply rounds = server.controller().Rounds(v1::ListRoundsRequest());
  const std::vector<Round> plan = RoundPlanner(recipe).Plan();
  EXPECT_EQ(rounds.rounds_size(), static_cast<int>(plan.size()));
  int checked = 0;
  for (const v1::RoundRecord& r : rounds.rounds()) {
    EXPECT_EQ(r.workers(), recipe.workers);
    EXPECT_TRUE(r.identical()) << "round " << r.round();
    checked += r.digest_checked() ? 1 : 0;
    EXPECT_GT(r.train_loss(), 0.0);
  }
  // Local SGD without overlap: every round's averaging was compared across the workers.
  EXPECT_EQ(checked, static_cast<int>(plan.size()));
  EXPECT_EQ(server.controller().Status(absl::Now()).state(), "FINISHED");
  return testing::ReadLines(run_dir + "/evals.jsonl");
}

TEST(DataTrainingTest, ImageFolderJpegTreeWithTwoWorkers) {
  testing::TempDir dir;
  const std::string data = dir.path() + "/tree";
  std::mt19937 rng(1);
  const char* classes[] = {"blue_thing", "green_thing", "red_thing"};  // sorted = label order
  for (int c = 0; c < 3; ++c) {
    for (int split = 0; split < 2; ++split) {
      const int n = split == 0 ? 16 : 4;
      for (int i = 0; i < n; ++i) {
        const int w = 40 + 4 * (i % 3), h = 36 + 2 * (i % 4);  // sizes vary, as in ImageNet
        const std::vector<uint8_t> rgb = ClassPixels(2 - c, w, h, rng);
        absl::StatusOr<std::vector<uint8_t>> jpeg = EncodeJpeg(rgb.data(), w, h, 3, 90);
        ASSERT_TRUE(jpeg.ok()) << jpeg.status();
        WriteBytes(fs::path(data) / (split == 0 ? "train" : "val") / classes[c] /
                       absl::StrCat("img", i, ".jpg"),
                   *jpeg);
      }
    }
  }
  Recipe recipe;
  recipe.dataset = "imagefolder";
  recipe.data_dir = data;
  recipe.image_size = 32;
  recipe.model = "cnn";
  recipe.optimizer = "localsgd";
  recipe.workers = 2;
  recipe.nw = 2;
  recipe.total_batch_size = 8;
  recipe.steps_per_epoch = 6;  // 48 training images
  recipe.epochs = 2;
  recipe.max_lr = 0.05;
  recipe.min_lr = 0;
  recipe.init_h = 2;
  recipe.eval_batch_size = 4;
  recipe.eval_on_start = true;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  std::unique_ptr<CoordinatorServer> server = RunToEnd(recipe, dir.path() + "/run");
  ASSERT_NE(server, nullptr);
  std::vector<std::string> evals = CheckRun(recipe, *server, dir.path() + "/run");
  ASSERT_EQ(evals.size(), 3u);  // at the start and after each epoch
  for (const std::string& e : evals) {
    std::cout << "imagefolder eval: " << e << "\n";
    EXPECT_EQ(testing::JsonField(e, "examples"), "12");  // the whole val/ split, once
    const double acc = std::stod(testing::JsonField(e, "test_acc"));
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
    EXPECT_EQ(std::stod(testing::JsonField(e, "test_acc5")), 1.0);  // 3 classes
  }
  EXPECT_LT(std::stod(testing::JsonField(evals.back(), "test_loss")),
            std::stod(testing::JsonField(evals.front(), "test_loss")));
}

TEST(DataTrainingTest, CifarBinaryFilesWithMixupAndTwoWorkers) {
  testing::TempDir dir;
  testing::WriteCifar10(dir.path(), 32, 50, 2);
  Recipe recipe;
  recipe.dataset = "cifar10";
  recipe.data_dir = dir.path();
  recipe.model = "cnn";
  recipe.optimizer = "localsgd";
  recipe.workers = 2;
  recipe.total_batch_size = 8;
  recipe.steps_per_epoch = 20;  // 160 training records
  recipe.epochs = 2;
  recipe.max_lr = 0.05;
  recipe.min_lr = 0;
  recipe.init_h = 2;
  recipe.mixup_alpha = 0.2;
  recipe.label_smoothing = 0.1;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  std::unique_ptr<CoordinatorServer> server = RunToEnd(recipe, dir.path() + "/run");
  ASSERT_NE(server, nullptr);
  std::vector<std::string> evals = CheckRun(recipe, *server, dir.path() + "/run");
  ASSERT_EQ(evals.size(), 2u);
  for (const std::string& e : evals) {
    std::cout << "cifar10 eval: " << e << "\n";
    EXPECT_EQ(testing::JsonField(e, "examples"), "50");
  }
  // Ten separable classes (chance: 10%): the model learned them, not only ran.
  EXPECT_GE(std::stod(testing::JsonField(evals.back(), "test_acc")), 0.5) << evals.back();
}

// strong_aug (RandAugment in the loader threads) through the whole path: recipe, coordinator,
// worker processes, CIFAR loader; every round stays identical across the workers.
TEST(DataTrainingTest, CifarWithStrongAugOnTwoWorkers) {
  testing::TempDir dir;
  testing::WriteCifar10(dir.path(), 32, 50, 2);
  Recipe recipe;
  recipe.dataset = "cifar10";
  recipe.data_dir = dir.path();
  recipe.model = "cnn";
  recipe.optimizer = "localsgd";
  recipe.workers = 2;
  recipe.total_batch_size = 8;
  recipe.steps_per_epoch = 10;
  recipe.epochs = 1;
  recipe.max_lr = 0.05;
  recipe.min_lr = 0;
  recipe.init_h = 2;
  recipe.strong_aug = true;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  std::unique_ptr<CoordinatorServer> server = RunToEnd(recipe, dir.path() + "/run");
  ASSERT_NE(server, nullptr);
  std::vector<std::string> evals = CheckRun(recipe, *server, dir.path() + "/run");
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(testing::JsonField(evals[0], "examples"), "50");
}

}  // namespace
}  // namespace qsr
