#include "checkpoint/checkpoint_manifest.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class CheckpointManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "qsr-manifest-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void Write(const std::string& path, const std::string& contents) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << contents;
  }

  // A complete checkpoint of `step` with a model and two per-rank optimizer files.
  std::string Commit(int64_t step) {
    const std::string folder = CheckpointStepDir(dir_, step);
    CheckpointManifest m;
    m.step = step;
    m.epoch = step / 10;
    m.round = step / 2;
    m.h = 2;
    m.world_size = 2;
    m.recipe_yaml = "model: \"cnn\"\nworkers: 2\n";
    m.model = absl::StrCat("model_step=", step, "-epoch=", m.epoch, ".pt");
    m.optimizer = absl::StrCat("opt_step=", step, "-epoch=", m.epoch);
    m.per_rank = true;
    Write(folder + "/" + m.model, absl::StrCat("model bytes of step ", step));
    for (int rank = 0; rank < 2; ++rank) {
      const std::string rel = absl::StrCat(m.optimizer, "/rank=", rank, ".pt");
      Write(folder + "/" + rel, absl::StrCat("optimizer of rank ", rank, " at ", step));
    }
    for (const std::string& rel :
         {m.model, m.optimizer + "/rank=0.pt", m.optimizer + "/rank=1.pt"}) {
      absl::StatusOr<ManifestFile> f = DigestFile(folder + "/" + rel);
      EXPECT_TRUE(f.ok()) << f.status();
      f->path = rel;
      m.files.push_back(*f);
    }
    EXPECT_TRUE(WriteManifest(folder, m).ok());
    return folder;
  }

  std::string dir_;
};

TEST_F(CheckpointManifestTest, RoundTripsThroughJson) {
  CheckpointManifest m;
  m.step = 120;
  m.epoch = 3;
  m.round = 17;
  m.h = 8;
  m.world_size = 4;
  m.recipe_yaml = "model: \"resnet18\"\nnote: \"quotes \\\" and\ttabs\"\n";
  m.model = "model_step=120-epoch=3.pt";
  m.optimizer = "opt_step=120-epoch=3";
  m.per_rank = true;
  m.files = {{"model_step=120-epoch=3.pt", 1234, 0xdeadbeefu}};
  absl::StatusOr<CheckpointManifest> back = ParseManifest(ManifestToJson(m), "test");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->step, 120);
  EXPECT_EQ(back->epoch, 3);
  EXPECT_EQ(back->round, 17);
  EXPECT_EQ(back->h, 8);
  EXPECT_EQ(back->world_size, 4);
  EXPECT_EQ(back->recipe_yaml, m.recipe_yaml);
  EXPECT_EQ(back->model, m.model);
  EXPECT_EQ(back->optimizer, m.optimizer);
  EXPECT_TRUE(back->per_rank);
  ASSERT_EQ(back->files.size(), 1u);
  EXPECT_EQ(back->files[0].bytes, 1234);
  EXPECT_EQ(back->files[0].crc32, 0xdeadbeefu);
}

TEST_F(CheckpointManifestTest, AManifestMissingAFieldOrOfAnotherFormatIsRefusedByName) {
  CheckpointManifest m;
  m.step = 40;
  m.files = {{"model.pt", 5000000000, 7}};  // beyond 32 bits: still a JSON number
  const std::string json = ManifestToJson(m);
  EXPECT_EQ(json.back(), '\n');
  EXPECT_THAT(json, HasSubstr("\"files\":[{\"path\":\"model.pt\",\"bytes\":5000000000,"
                              "\"crc32\":7}]"));
  absl::StatusOr<CheckpointManifest> back = ParseManifest(json, "m");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->files[0].bytes, 5000000000);

  auto error = [](const std::string& text) {
    return std::string(ParseManifest(text, "manifest m").status().message());
  };
  std::string no_files = json;
  no_files.replace(no_files.find("\"files\""), 7, "\"filez\"");
  EXPECT_THAT(error(no_files), HasSubstr("manifest m"));
  EXPECT_THAT(error(no_files), HasSubstr("\"files\" is missing"));
  std::string format2 = json;
  format2.replace(format2.find("\"format\":1"), 10, "\"format\":2");
  EXPECT_THAT(error(format2), HasSubstr("format 2 is not supported"));
  EXPECT_THAT(error(json.substr(0, json.size() / 2)), HasSubstr("truncated"));
  EXPECT_THAT(error(""), HasSubstr("manifest m"));
}

TEST_F(CheckpointManifestTest, DigestIsZlibCrc32) {
  Write(dir_ + "/f", "123456789");
  absl::StatusOr<ManifestFile> f = DigestFile(dir_ + "/f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->bytes, 9);
  EXPECT_EQ(f->crc32, 0xCBF43926u);  // the CRC-32 check value
  EXPECT_THAT(std::string(DigestFile(dir_ + "/none").status().message()), HasSubstr("/none"));
}

TEST_F(CheckpointManifestTest, PicksTheNewestCompleteCheckpoint) {
  Commit(10);
  Commit(20);
  absl::StatusOr<ChosenCheckpoint> c = NewestGoodCheckpoint(dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->manifest.step, 20);
  EXPECT_TRUE(c->skipped.empty());
  EXPECT_EQ(c->manifest_path, CheckpointStepDir(dir_, 20) + "/MANIFEST.json");
}

TEST_F(CheckpointManifestTest, CorruptFileFallsBackToThePreviousOneAndNamesTheFile) {
  Commit(10);
  const std::string newest = Commit(20);
  // Same size, different bytes: only the checksum can tell.
  Write(newest + "/opt_step=20-epoch=2/rank=1.pt", "optimizer of rank 9 at 20");
  absl::StatusOr<ChosenCheckpoint> c = NewestGoodCheckpoint(dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->manifest.step, 10);
  ASSERT_EQ(c->skipped.size(), 1u);
  EXPECT_THAT(c->skipped[0], HasSubstr("opt_step=20-epoch=2/rank=1.pt"));
  EXPECT_THAT(c->skipped[0], HasSubstr("corrupt"));
}

TEST_F(CheckpointManifestTest, TruncatedFileIsDetected) {
  const std::string folder = Commit(10);
  Write(folder + "/model_step=10-epoch=1.pt", "model");
  absl::StatusOr<CheckpointManifest> m = VerifyCheckpoint(folder + "/MANIFEST.json");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("model_step=10-epoch=1.pt"));
}

TEST_F(CheckpointManifestTest, MissingOrTruncatedManifestIsSkippedByName) {
  Commit(10);
  const std::string torn = Commit(20);
  const std::string text = [&] {
    std::ifstream in(torn + "/MANIFEST.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  Write(torn + "/MANIFEST.json", text.substr(0, text.size() / 2));
  const std::string partial = CheckpointStepDir(dir_, 30);  // files written, never committed
  Write(partial + "/model_step=30-epoch=3.pt", "model");
  absl::StatusOr<ChosenCheckpoint> c = NewestGoodCheckpoint(dir_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->manifest.step, 10);
  ASSERT_EQ(c->skipped.size(), 2u);
  EXPECT_THAT(c->skipped[0], HasSubstr("step=30/MANIFEST.json"));
  EXPECT_THAT(c->skipped[0], HasSubstr("incomplete"));
  EXPECT_THAT(c->skipped[1], HasSubstr("step=20/MANIFEST.json"));
}

TEST_F(CheckpointManifestTest, NoGoodCheckpointIsNotFoundListingWhy) {
  const std::string folder = Commit(10);
  fs::remove(folder + "/opt_step=10-epoch=1/rank=0.pt");
  absl::StatusOr<ChosenCheckpoint> c = NewestGoodCheckpoint(dir_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("rank=0.pt is missing"));
  EXPECT_EQ(NewestGoodCheckpoint(dir_ + "/nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CheckpointManifestTest, ApplyResumeFillsTheRecipe) {
  Commit(10);
  Commit(20);
  Recipe recipe;
  recipe.workers = 2;
  recipe.total_batch_size = 32;
  recipe.steps_per_epoch = 10;
  recipe.epochs = 4;
  recipe.resume = "latest";
  recipe.checkpoint_dir = dir_;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  absl::StatusOr<ChosenCheckpoint> c = ApplyResume(recipe, "/unused");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(recipe.resume_from_step, 20);
  EXPECT_EQ(recipe.resume_pth, CheckpointStepDir(dir_, 20) + "/model_step=20-epoch=2.pt");
  EXPECT_EQ(recipe.optimizer_resume_pth, CheckpointStepDir(dir_, 20) + "/opt_step=20-epoch=2");

  // An explicit folder; and a checkpoint from another world size is refused.
  Recipe explicit_one = recipe;
  explicit_one.resume = CheckpointStepDir(dir_, 10);
  ASSERT_TRUE(ApplyResume(explicit_one, "").ok());
  EXPECT_EQ(explicit_one.resume_from_step, 10);
  Recipe other = recipe;
  other.workers = 4;
  other.physical_batch_size = -1;
  other.max_workers = -1;
  ASSERT_TRUE(ResolveRecipe(other).ok());
  absl::StatusOr<ChosenCheckpoint> refused = ApplyResume(other, "");
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("2 workers"));

  // Off: nothing changes.
  Recipe off;
  ASSERT_TRUE(ApplyResume(off, dir_).ok());
  EXPECT_EQ(off.resume_from_step, -1);
}

}  // namespace
}  // namespace qsr
