#include "worker/model_snapshotter.h"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace qsr {
namespace {

struct Line {
  int64_t step = -1;
  double epoch = 0, clock_s = 0, wall_s = 0, write_s = 0;
  std::string file;
};

std::vector<Line> ReadIndex(const std::string& dir) {
  std::vector<Line> lines;
  std::ifstream in(dir + "/snapshots.jsonl");
  std::string text;
  while (std::getline(in, text)) {
    Line l;
    char file[64] = {0};
    long long step = 0;
    const int n = std::sscanf(text.c_str(),
                              "{\"step\":%lld,\"epoch\":%lf,\"clock_s\":%lf,\"wall_s\":%lf,"
                              "\"write_s\":%lf,\"file\":\"%63[^\"]\"}",
                              &step, &l.epoch, &l.clock_s, &l.wall_s, &l.write_s, file);
    EXPECT_EQ(n, 6) << "unparsed line: " << text;
    l.step = step;
    l.file = file;
    lines.push_back(l);
  }
  return lines;
}

class ModelSnapshotterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("model_snapshotter_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    torch::manual_seed(3);
    model_ = torch::nn::Linear(4, 2);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A clock that moves 1 ms whenever it is read (so writes take time) and by Advance.
  SnapshotOptions Options(double every, int64_t spe) {
    SnapshotOptions o;
    o.dir = dir_.string();
    o.every_epochs = every;
    o.steps_per_epoch = spe;
    o.now = [this] {
      now_ += absl::Milliseconds(1);
      return now_;
    };
    return o;
  }
  void Advance(absl::Duration d) { now_ += d; }

  std::filesystem::path dir_;
  torch::nn::Linear model_{nullptr};
  absl::Time now_ = absl::FromUnixSeconds(1000);
};

TEST_F(ModelSnapshotterTest, RefusesBadOptions) {
  for (double every : {0.0, -0.5, std::nan(""), HUGE_VAL}) {
    auto s = ModelSnapshotter::Create(Options(every, 16));
    ASSERT_FALSE(s.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(s.status()));
    EXPECT_NE(s.status().message().find("--snapshot-every"), std::string::npos);
  }
  EXPECT_TRUE(absl::IsInvalidArgument(ModelSnapshotter::Create(Options(0.25, 0)).status()));
  SnapshotOptions no_dir = Options(0.25, 16);
  no_dir.dir = "";
  EXPECT_TRUE(absl::IsInvalidArgument(ModelSnapshotter::Create(no_dir).status()));
  SnapshotOptions bad_dir = Options(0.25, 16);
  bad_dir.dir = "/proc/no/such/dir";
  EXPECT_FALSE(ModelSnapshotter::Create(bad_dir).ok());
}

// Syncs every step (data-parallel): a snapshot every interval, 1/16 of 468 = 29.25 steps.
TEST_F(ModelSnapshotterTest, EverySyncIsThinnedToTheInterval) {
  auto s = ModelSnapshotter::Create(Options(0.0625, 468));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Begin(0, *model_).ok());
  for (int64_t step = 1; step <= 100; ++step) ASSERT_TRUE((*s)->AfterSync(step, *model_).ok());
  std::vector<int64_t> steps;
  for (const Line& l : ReadIndex(dir_.string())) steps.push_back(l.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 30, 60, 90}));
}

// Syncs rarer than the interval: a snapshot at every sync.
TEST_F(ModelSnapshotterTest, RareSyncsAreEachSnapshotted) {
  auto s = ModelSnapshotter::Create(Options(0.25, 16));  // every 4 steps
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Begin(0, *model_).ok());
  ASSERT_TRUE((*s)->Begin(0, *model_).ok());  // a re-formed group: nothing more
  for (int64_t step : {6, 8, 14, 20}) ASSERT_TRUE((*s)->AfterSync(step, *model_).ok());
  ASSERT_TRUE((*s)->Final(20, *model_).ok());  // already written
  ASSERT_TRUE((*s)->Final(22, *model_).ok());
  std::vector<int64_t> steps;
  for (const Line& l : ReadIndex(dir_.string())) {
    steps.push_back(l.step);
    EXPECT_DOUBLE_EQ(l.epoch, l.step / 16.0);
    EXPECT_TRUE(std::filesystem::exists(dir_ / l.file)) << l.file;
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 6, 14, 20, 22}));
  EXPECT_EQ((*s)->snapshots(), 5);
}

TEST_F(ModelSnapshotterTest, ClockLeavesOutWritesAndPauses) {
  auto s = ModelSnapshotter::Create(Options(0.25, 16));
  ASSERT_TRUE(s.ok()) << s.status();
  {
    ModelSnapshotter::Paused before((*s).get());  // before Begin: nothing to leave out
    Advance(absl::Seconds(100));
  }
  ASSERT_TRUE((*s)->Begin(0, *model_).ok());
  Advance(absl::Seconds(10));
  ASSERT_TRUE((*s)->AfterSync(4, *model_).ok());
  {
    ModelSnapshotter::Paused eval((*s).get());
    ModelSnapshotter::Paused nested((*s).get());
    Advance(absl::Seconds(5));
  }
  Advance(absl::Seconds(10));
  ASSERT_TRUE((*s)->AfterSync(8, *model_).ok());
  const std::vector<Line> lines = ReadIndex(dir_.string());
  ASSERT_EQ(lines.size(), 3u);
  // Every reading of the fake clock adds 1 ms: the tolerances cover them.
  EXPECT_NEAR(lines[0].clock_s, 0, 0.01);
  EXPECT_NEAR(lines[1].clock_s, 10, 0.01);
  EXPECT_NEAR(lines[2].clock_s, 20, 0.02);
  EXPECT_NEAR(lines[2].wall_s, 25, 0.02);
  double writes = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_GT(lines[i].write_s, 0);
    EXPECT_LE(lines[i].clock_s, lines[i].wall_s);
    if (i > 0) {
      EXPECT_GT(lines[i].clock_s, lines[i - 1].clock_s);
    }
    // What the clock left out up to here: the earlier writes (and from the third, the pause).
    if (i < 2) {
      EXPECT_NEAR(lines[i].wall_s - lines[i].clock_s, writes, 0.005);
    }
    writes += lines[i].write_s;
  }
  EXPECT_NEAR(lines[2].wall_s - lines[2].clock_s, writes - lines[2].write_s + 5, 0.01);
}

TEST_F(ModelSnapshotterTest, FilesHoldTheModelAtThatStep) {
  auto s = ModelSnapshotter::Create(Options(1, 2));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Begin(0, *model_).ok());
  const torch::Tensor first = model_->weight.detach().clone();
  {
    torch::NoGradGuard no_grad;
    model_->weight.add_(1.0);
  }
  ASSERT_TRUE((*s)->AfterSync(2, *model_).ok());
  const std::vector<Line> lines = ReadIndex(dir_.string());
  ASSERT_EQ(lines.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    std::ifstream in(dir_ / lines[i].file, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    c10::Dict<c10::IValue, c10::IValue> dict = torch::pickle_load(bytes).toGenericDict();
    const torch::Tensor w = dict.at("weight").toTensor();
    EXPECT_TRUE(torch::equal(w, i == 0 ? first : model_->weight.detach())) << lines[i].file;
  }
}

TEST_F(ModelSnapshotterTest, CallsBeforeBeginAreRefused) {
  auto s = ModelSnapshotter::Create(Options(1, 2));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(absl::IsFailedPrecondition((*s)->AfterSync(2, *model_)));
  EXPECT_TRUE(absl::IsFailedPrecondition((*s)->Final(2, *model_)));
  EXPECT_TRUE(ReadIndex(dir_.string()).empty());
}

}  // namespace
}  // namespace qsr
