#include "coordinator/run_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  size_t off = 0;
  while (off < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + off, contents.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return ErrnoError("cannot write", tmp);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) return ErrnoError("cannot flush", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("cannot rename to", path);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RunLog>> RunLog::Open(const std::string& dir,
                                                     const std::string& recipe_yaml) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create run directory ", dir, ": ", ec.message()));
  }
  if (absl::Status s = WriteFileAtomically(dir + "/recipe.yaml", recipe_yaml); !s.ok()) return s;
  FILE* rounds = std::fopen((dir + "/rounds.jsonl").c_str(), "a");
  if (rounds == nullptr) return ErrnoError("cannot open", dir + "/rounds.jsonl");
  FILE* evals = std::fopen((dir + "/evals.jsonl").c_str(), "a");
  if (evals == nullptr) {
    std::fclose(rounds);
    return ErrnoError("cannot open", dir + "/evals.jsonl");
  }
  return std::unique_ptr<RunLog>(new RunLog(dir, rounds, evals));
}

RunLog::~RunLog() {
  std::fclose(rounds_);
  std::fclose(evals_);
}

void RunLog::AppendRound(const std::string& json_line) {
  std::fprintf(rounds_, "%s\n", json_line.c_str());
  std::fflush(rounds_);
}

void RunLog::AppendEval(const std::string& json_line) {
  std::fprintf(evals_, "%s\n", json_line.c_str());
  std::fflush(evals_);
}

absl::Status RunLog::WriteSummary(const std::string& json) {
  return WriteFileAtomically(dir_ + "/summary.json", json + "\n");
}

}  // namespace qsr
