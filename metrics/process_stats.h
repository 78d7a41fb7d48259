// ProcessStats: what the Prometheus client libraries export as the standard process_* metrics
// (CPU time, resident and virtual memory, start time, open and maximum file descriptors), read
// from Linux's /proc/self.
//
// The parsing is pure (ParseProcStat, ParseBootTime, ParseMaxOpenFiles take the files' text) so
// it is tested on fixed inputs; ReadProcessStats reads the live files. Thread-safe: no state.
#ifndef QSR_METRICS_PROCESS_STATS_H_
#define QSR_METRICS_PROCESS_STATS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace qsr {

struct ProcessStats {
  double cpu_seconds = 0;         // user + system CPU time
  double resident_bytes = 0;      // resident set size
  double virtual_bytes = 0;       // virtual memory size
  double start_time_seconds = 0;  // since the Unix epoch
  double open_fds = -1;           // -1: unknown
  double max_fds = -1;            // the soft limit; -1: unknown or unlimited
};

// Fills cpu_seconds, resident_bytes, virtual_bytes and start_time_seconds from the text of
// /proc/self/stat. `ticks_per_second` is sysconf(_SC_CLK_TCK), `page_bytes` the page size,
// `boot_time_seconds` the btime line of /proc/stat. The command name (field 2) may hold spaces
// and parentheses: fields are counted from the last ')'.
absl::Status ParseProcStat(const std::string& stat, double ticks_per_second, double page_bytes,
                           double boot_time_seconds, ProcessStats* out);

// The `btime` value of /proc/stat (boot time, seconds since the epoch).
absl::StatusOr<double> ParseBootTime(const std::string& proc_stat);

// The soft "Max open files" limit from /proc/self/limits; -1 when it is "unlimited".
absl::StatusOr<double> ParseMaxOpenFiles(const std::string& limits);

// All of the above for this process, plus the entries of /proc/self/fd.
absl::StatusOr<ProcessStats> ReadProcessStats();

}  // namespace qsr

#endif  // QSR_METRICS_PROCESS_STATS_H_
