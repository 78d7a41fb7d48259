#include "coordinator/journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"
#include "google/protobuf/util/json_util.h"
#include "zlib.h"

namespace qsr {
namespace {

void Replay(const v1::JournalEntry& e, Journal::Recovered* r) {
  switch (e.entry_case()) {
    case v1::JournalEntry::kStarted:
      r->run_id = e.started().run_id();
      r->recipe_yaml = e.started().recipe_yaml();
      break;
    case v1::JournalEntry::kServed:
      r->served.push_back(e.served());
      break;
    case v1::JournalEntry::kCommitted:
      r->committed.push_back(e.committed());
      break;
    case v1::JournalEntry::kEval:
      r->evals.push_back(e.eval());
      break;
    case v1::JournalEntry::kGeneration:
      r->generation = e.generation().generation();
      r->members.assign(e.generation().members().begin(), e.generation().members().end());
      break;
    case v1::JournalEntry::kCheckpoint:
      r->last_checkpoint = e.checkpoint();
      break;
    case v1::JournalEntry::kEnded:
      r->ended = true;
      r->end = e.ended();
      break;
    case v1::JournalEntry::ENTRY_NOT_SET:
      break;
  }
}

uint32_t Crc32(const std::string& s) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size()));
  return static_cast<uint32_t>(crc);
}

}  // namespace

std::string JournalLine(const std::string& json) {
  return absl::StrFormat("%s\t%08x", json, Crc32(json));
}

absl::StatusOr<std::string> JournalLineJson(const std::string& line) {
  const size_t tab = line.rfind('\t');
  if (tab == std::string::npos) return line;
  const std::string json = line.substr(0, tab);
  const std::string sum = line.substr(tab + 1);
  uint32_t want = 0;
  if (sum.size() != 8 || !absl::SimpleHexAtoi(sum, &want)) {
    return absl::DataLossError(
        absl::StrCat("its checksum field is not 8 hex digits (", sum.size(), " bytes)"));
  }
  const uint32_t got = Crc32(json);
  if (got != want) {
    return absl::DataLossError(absl::StrFormat(
        "its checksum does not match (the line says %08x, its contents give %08x)", want, got));
  }
  return json;
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& dir,
                                                       Recovered* recovered) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const std::string path = dir + "/journal.jsonl";
  *recovered = Recovered();
  std::string contents;
  {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      contents = ss.str();
    }
  }
  std::vector<std::string> lines = absl::StrSplit(contents, '\n');
  // The last element is what follows the last newline: empty, or a torn write.
  size_t valid_bytes = 0;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    v1::JournalEntry entry;
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;
    absl::StatusOr<std::string> json = JournalLineJson(lines[i]);
    const bool parsed =
        json.ok() && google::protobuf::util::JsonStringToMessage(*json, &entry, options).ok();
    if (!parsed) {
      return absl::DataLossError(absl::StrCat(
          path, " line ", i + 1, " (byte ", valid_bytes, ") is damaged: ",
          json.ok() ? "it is not a journal entry" : std::string(json.status().message()), ". The ",
          i,
          " entries before it are intact; the coordinator does not guess past a "
          "damaged entry, which may record something the workers were told. To continue the run "
          "from the entries before it: truncate -s ",
          valid_bytes, " ", path,
          " (the workers then redo what came after); to start a new run in this state directory, "
          "move the file away"));
    }
    Replay(entry, recovered);
    recovered->exists = true;
    valid_bytes += lines[i].size() + 1;
  }
  if (valid_bytes != contents.size()) {
    recovered->repair = absl::StrCat("dropped a torn last entry (", contents.size() - valid_bytes,
                                     " bytes after the last "
                                     "newline: a write cut short) from ",
                                     path,
                                     "; the journal ends at its last complete entry, "
                                     "line ",
                                     lines.size() - 1, " (byte ", valid_bytes, ")");
    LOG(WARNING) << recovered->repair;
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  if (valid_bytes != contents.size() && ::ftruncate(fd, static_cast<off_t>(valid_bytes)) != 0) {
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot truncate the torn end of ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<Journal>(new Journal(path, fd));
}

Journal::~Journal() { ::close(fd_); }

absl::Status Journal::Append(const v1::JournalEntry& entry) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(entry, &json).ok()) {
    return absl::InternalError("cannot encode a journal entry");
  }
  const std::string line = JournalLine(json) + '\n';
  // One write(2) per entry: O_APPEND keeps entries whole and in order.
  size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

bool RecipeChangedOnRestart(Recipe given, const Recipe& journaled) {
  if (given.checkpoint_dir.empty()) given.checkpoint_dir = journaled.checkpoint_dir;
  if (!given.resume.empty()) {
    given.resume_from_step = journaled.resume_from_step;
    given.resume_pth = journaled.resume_pth;
    given.optimizer_resume_pth = journaled.optimizer_resume_pth;
  }
  return RecipeToYaml(given) != RecipeToYaml(journaled);
}

}  // namespace qsr
