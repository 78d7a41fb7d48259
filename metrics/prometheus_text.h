// PrometheusPage: writes the Prometheus text exposition format (version 0.0.4): a family's HELP
// and TYPE once, then its samples, with label values escaped and values formatted as the format
// wants (NaN, +Inf, -Inf). Also the families every qsr binary with a /metrics endpoint serves:
// qsr_build_info and the standard process_* metrics.
//
// Not thread-safe: one page per scrape, built by one thread.
#ifndef QSR_METRICS_PROMETHEUS_TEXT_H_
#define QSR_METRICS_PROMETHEUS_TEXT_H_

#include <string>

#include "metrics/process_stats.h"

namespace qsr {

// A label value, escaped as the exposition format requires (backslash, quote, newline).
std::string PrometheusLabel(const std::string& value);

// A sample value: %.10g, or NaN / +Inf / -Inf.
std::string PrometheusValue(double value);

class PrometheusPage {
 public:
  PrometheusPage& Family(const std::string& name, const std::string& type, const std::string& help);
  // `labels` is the text between the braces (name="value",...), already escaped; "" for none.
  PrometheusPage& Sample(const std::string& name, double value, const std::string& labels = "");
  // A family with one unlabelled sample.
  PrometheusPage& One(const std::string& name, const std::string& type, const std::string& help,
                      double value);
  std::string str() && { return std::move(out_); }

 private:
  std::string out_;
};

// The qsr version this binary was built from (CMake's project version) and its git revision
// ("unknown" outside a git checkout).
const char* QsrVersion();
const char* QsrRevision();

// qsr_build_info{binary,version,revision} 1.
void AppendBuildInfo(const std::string& binary, PrometheusPage* page);

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_start_time_seconds, process_open_fds and process_max_fds (the last two only when
// known), with the names and types of the Prometheus client libraries.
void AppendProcessMetrics(const ProcessStats& stats, PrometheusPage* page);

}  // namespace qsr

#endif  // QSR_METRICS_PROMETHEUS_TEXT_H_
