// Process CPU and memory from /proc, and percentiles: what the control-plane benchmarks
// (qsr-bench-coord, qsr-bench-release-floor) report next to their latencies.
//
// Linux only; no gRPC, no torch. Thread-safe (no shared state).
#ifndef QSR_BENCH_PROC_STATS_H_
#define QSR_BENCH_PROC_STATS_H_

#include <vector>

namespace qsr {

// CPU seconds (user + system) and resident set (current, peak) of a process.
struct ProcSample {
  double cpu_s = 0;
  double rss_mb = 0;
  double hwm_mb = 0;
};

// A sample of process `pid`; all zero when pid <= 0 or the process is gone.
ProcSample SampleProc(int pid);

// CPU seconds the calling process has used.
double SelfCpuSeconds();

// The p-th percentile (0-100) of v: the element at index round(p / 100 * (n - 1)) once sorted, so
// with fewer than 51 values the 99th is the maximum. 0 for an empty v.
double Percentile(std::vector<double> v, double p);

}  // namespace qsr

#endif  // QSR_BENCH_PROC_STATS_H_
