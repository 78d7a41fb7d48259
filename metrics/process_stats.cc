#include "metrics/process_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace qsr {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::Status ParseProcStat(const std::string& stat, double ticks_per_second, double page_bytes,
                           double boot_time_seconds, ProcessStats* out) {
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return absl::InvalidArgumentError("/proc/self/stat: no ')' after the command name");
  }
  // Fields from 3 (state) on; field N is rest[N - 3].
  std::vector<absl::string_view> rest =
      absl::StrSplit(absl::string_view(stat).substr(close + 1), ' ', absl::SkipWhitespace());
  auto field = [&](int n, double* v) {
    return n - 3 < static_cast<int>(rest.size()) &&
           absl::SimpleAtod(absl::StripAsciiWhitespace(rest[n - 3]), v);
  };
  double utime, stime, starttime, vsize, rss;
  if (!field(14, &utime) || !field(15, &stime) || !field(22, &starttime) || !field(23, &vsize) ||
      !field(24, &rss) || ticks_per_second <= 0) {
    return absl::InvalidArgumentError("/proc/self/stat: fewer than 24 numeric fields");
  }
  out->cpu_seconds = (utime + stime) / ticks_per_second;
  out->start_time_seconds = boot_time_seconds + starttime / ticks_per_second;
  out->virtual_bytes = vsize;
  out->resident_bytes = rss * page_bytes;
  return absl::OkStatus();
}

absl::StatusOr<double> ParseBootTime(const std::string& proc_stat) {
  for (absl::string_view line : absl::StrSplit(proc_stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      double v;
      if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &v)) return v;
    }
  }
  return absl::InvalidArgumentError("/proc/stat: no btime line");
}

absl::StatusOr<double> ParseMaxOpenFiles(const std::string& limits) {
  for (absl::string_view line : absl::StrSplit(limits, '\n')) {
    if (!absl::ConsumePrefix(&line, "Max open files")) continue;
    std::vector<absl::string_view> cols = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (cols.empty()) break;
    if (cols[0] == "unlimited") return -1.0;
    double v;
    if (absl::SimpleAtod(cols[0], &v)) return v;
    break;
  }
  return absl::InvalidArgumentError("/proc/self/limits: no \"Max open files\" soft limit");
}

absl::StatusOr<ProcessStats> ReadProcessStats() {
  ProcessStats s;
  absl::StatusOr<std::string> stat = ReadFile("/proc/self/stat");
  if (!stat.ok()) return stat.status();
  absl::StatusOr<std::string> proc_stat = ReadFile("/proc/stat");
  if (!proc_stat.ok()) return proc_stat.status();
  absl::StatusOr<double> boot = ParseBootTime(*proc_stat);
  if (!boot.ok()) return boot.status();
  if (absl::Status st = ParseProcStat(*stat, static_cast<double>(::sysconf(_SC_CLK_TCK)),
                                      static_cast<double>(::sysconf(_SC_PAGESIZE)), *boot, &s);
      !st.ok()) {
    return st;
  }
  if (absl::StatusOr<std::string> limits = ReadFile("/proc/self/limits"); limits.ok()) {
    if (absl::StatusOr<double> max = ParseMaxOpenFiles(*limits); max.ok()) s.max_fds = *max;
  }
  if (DIR* dir = ::opendir("/proc/self/fd"); dir != nullptr) {
    int n = 0;
    while (const dirent* e = ::readdir(dir)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(dir);
    s.open_fds = n - 1;  // the directory stream's own descriptor
  }
  return s;
}

}  // namespace qsr
