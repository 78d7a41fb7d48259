// The journal's reader on damaged files: a torn tail is dropped and reported, a damaged complete
// line (bad checksum, garbage, not an entry) is refused with a message that names it; never a
// crash, never a replay that differs from what was written.
#include "coordinator/journal.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Write(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
}

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/journal_" + std::to_string(absl::ToUnixNanos(absl::Now()));
    path_ = dir_ + "/journal.jsonl";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A journal with a start, a generation and `rounds` committed rounds (round i: step 2i, H 2,
  // loss 0.5 + i).
  void WriteJournal(int rounds) {
    Journal::Recovered recovered;
    absl::StatusOr<std::unique_ptr<Journal>> journal = Journal::Open(dir_, &recovered);
    ASSERT_TRUE(journal.ok()) << journal.status();
    EXPECT_FALSE(recovered.exists);
    v1::JournalEntry started;
    started.mutable_started()->set_run_id("r1");
    started.mutable_started()->set_recipe_yaml("model: mlp\n");
    ASSERT_TRUE((*journal)->Append(started).ok());
    v1::JournalEntry generation;
    generation.mutable_generation()->set_generation(1);
    generation.mutable_generation()->add_members("w0");
    generation.mutable_generation()->add_members("w1");
    ASSERT_TRUE((*journal)->Append(generation).ok());
    for (int i = 0; i < rounds; ++i) {
      v1::JournalEntry committed;
      committed.mutable_committed()->set_round(i);
      committed.mutable_committed()->set_step(2 * i);
      committed.mutable_committed()->set_h(2);
      committed.mutable_committed()->set_train_loss(0.5 + i);
      ASSERT_TRUE((*journal)->Append(committed).ok());
    }
  }

  absl::StatusOr<std::unique_ptr<Journal>> Reopen(Journal::Recovered* recovered) {
    return Journal::Open(dir_, recovered);
  }

  std::string dir_, path_;
};

TEST_F(JournalTest, EveryLineCarriesItsChecksumAndReplaysAsWritten) {
  WriteJournal(3);
  const std::vector<std::string> lines = absl::StrSplit(Read(path_), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  for (const std::string& line : lines) {
    const size_t tab = line.rfind('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    EXPECT_EQ(line.size() - tab - 1, 8u) << line;
    EXPECT_EQ(JournalLine(line.substr(0, tab)), line);
  }
  Journal::Recovered r;
  ASSERT_TRUE(Reopen(&r).ok());
  EXPECT_TRUE(r.exists);
  EXPECT_TRUE(r.repair.empty());
  EXPECT_EQ(r.run_id, "r1");
  EXPECT_EQ(r.generation, 1);
  EXPECT_EQ(r.members, (std::vector<std::string>{"w0", "w1"}));
  ASSERT_EQ(r.committed.size(), 3u);
  EXPECT_EQ(r.committed[2].step(), 4);
  EXPECT_EQ(r.committed[2].train_loss(), 2.5);
}

TEST_F(JournalTest, ATruncatedLastLineIsDroppedReportedAndCutFromTheFile) {
  WriteJournal(3);
  const std::string whole = Read(path_);
  const size_t last_start = whole.rfind('\n', whole.size() - 2) + 1;
  // Cut the last entry in the middle (a crash during its write).
  Write(path_, whole.substr(0, last_start + 20));
  Journal::Recovered r;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Reopen(&r);
  ASSERT_TRUE(journal.ok()) << journal.status();
  ASSERT_EQ(r.committed.size(), 2u);
  EXPECT_EQ(r.committed[1].round(), 1);
  EXPECT_TRUE(absl::StrContains(r.repair, "20 bytes")) << r.repair;
  EXPECT_TRUE(absl::StrContains(r.repair, "line 4")) << r.repair;
  EXPECT_EQ(Read(path_), whole.substr(0, last_start));
  // Appending continues a clean journal.
  v1::JournalEntry committed;
  committed.mutable_committed()->set_round(2);
  ASSERT_TRUE((*journal)->Append(committed).ok());
  journal->reset();
  Journal::Recovered again;
  ASSERT_TRUE(Reopen(&again).ok());
  EXPECT_TRUE(again.repair.empty());
  EXPECT_EQ(again.committed.size(), 3u);
}

TEST_F(JournalTest, GarbageAfterTheLastNewlineIsDroppedAsATornTail) {
  WriteJournal(2);
  const std::string whole = Read(path_);
  Write(path_, whole + std::string("\0\0\xff{\"comm", 9));
  Journal::Recovered r;
  ASSERT_TRUE(Reopen(&r).ok());
  EXPECT_EQ(r.committed.size(), 2u);
  EXPECT_TRUE(absl::StrContains(r.repair, "9 bytes")) << r.repair;
  EXPECT_EQ(Read(path_), whole);
}

// A complete line was written whole: the call it records may have been answered, so the reader
// refuses instead of guessing, and says how to cut the journal back.
TEST_F(JournalTest, AGarbageLineIsRefusedWithTheWayToCutItOff) {
  WriteJournal(2);
  const std::string whole = Read(path_);
  Write(path_, whole + "\x01\x02garbage\xfe\n");
  Journal::Recovered r;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Reopen(&r);
  ASSERT_FALSE(journal.ok());
  EXPECT_TRUE(absl::IsDataLoss(journal.status())) << journal.status();
  const std::string message(journal.status().message());
  EXPECT_TRUE(absl::StrContains(message, path_ + " line 5")) << message;
  EXPECT_TRUE(absl::StrContains(message, absl::StrCat("truncate -s ", whole.size(), " ", path_)))
      << message;
  // Nothing was changed: the operator decides.
  EXPECT_EQ(Read(path_), whole + "\x01\x02garbage\xfe\n");
}

// A flipped digit in a committed round still parses as JSON: only the checksum catches it.
TEST_F(JournalTest, ALineWithABadChecksumIsRefusedNotReplayed) {
  WriteJournal(3);
  std::string whole = Read(path_);
  const size_t at = whole.find("\"trainLoss\":1.5");
  ASSERT_NE(at, std::string::npos) << whole;
  whole[at + std::string("\"trainLoss\":").size()] = '7';  // 1.5 -> 7.5
  Write(path_, whole);
  Journal::Recovered r;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Reopen(&r);
  ASSERT_FALSE(journal.ok()) << "replayed a damaged loss as " << r.committed[1].train_loss();
  const std::string message(journal.status().message());
  EXPECT_TRUE(absl::IsDataLoss(journal.status()));
  EXPECT_TRUE(absl::StrContains(message, "line 4")) << message;
  EXPECT_TRUE(absl::StrContains(message, "checksum does not match")) << message;
  EXPECT_TRUE(absl::StrContains(message, "3 entries before it")) << message;
}

TEST_F(JournalTest, AMalformedChecksumFieldIsRefused) {
  WriteJournal(1);
  std::string whole = Read(path_);
  whole.insert(whole.size() - 1, "zz");  // the last line's checksum is now 10 characters
  Write(path_, whole);
  Journal::Recovered r;
  absl::StatusOr<std::unique_ptr<Journal>> journal = Reopen(&r);
  ASSERT_FALSE(journal.ok());
  EXPECT_TRUE(absl::StrContains(journal.status().message(), "not 8 hex digits"))
      << journal.status();
}

TEST_F(JournalTest, LinesWithoutAChecksumAreReadAsPlainJson) {
  std::filesystem::create_directories(dir_);
  Write(path_,
        "{\"started\":{\"runId\":\"old\",\"recipeYaml\":\"model: mlp\\n\"}}\n"
        "{\"committed\":{\"round\":\"0\",\"step\":\"0\",\"h\":\"2\"}}\n");
  Journal::Recovered r;
  ASSERT_TRUE(Reopen(&r).ok());
  EXPECT_EQ(r.run_id, "old");
  ASSERT_EQ(r.committed.size(), 1u);
  EXPECT_EQ(r.committed[0].h(), 2);
}

TEST(JournalLineTest, ChecksumsAreCheckedAndNamed) {
  const std::string line = JournalLine("{\"a\":1}");
  absl::StatusOr<std::string> json = JournalLineJson(line);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(*json, "{\"a\":1}");
  std::string flipped = line;
  flipped[5] = '2';
  EXPECT_TRUE(absl::IsDataLoss(JournalLineJson(flipped).status()));
  EXPECT_TRUE(absl::IsDataLoss(JournalLineJson("{}\t12345678").status()));
  EXPECT_TRUE(absl::IsDataLoss(JournalLineJson("{}\t").status()));
}

}  // namespace
}  // namespace qsr
