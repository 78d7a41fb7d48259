#include "metrics/prometheus_text.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#ifndef QSR_VERSION
#define QSR_VERSION "unknown"
#endif
#ifndef QSR_REVISION
#define QSR_REVISION "unknown"
#endif

namespace qsr {

std::string PrometheusLabel(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string PrometheusValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return absl::StrFormat("%.10g", v);
}

PrometheusPage& PrometheusPage::Family(const std::string& name, const std::string& type,
                                       const std::string& help) {
  absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  return *this;
}

PrometheusPage& PrometheusPage::Sample(const std::string& name, double value,
                                       const std::string& labels) {
  absl::StrAppend(&out_, name, labels.empty() ? "" : "{" + labels + "}", " ",
                  PrometheusValue(value), "\n");
  return *this;
}

PrometheusPage& PrometheusPage::One(const std::string& name, const std::string& type,
                                    const std::string& help, double value) {
  return Family(name, type, help).Sample(name, value);
}

const char* QsrVersion() { return QSR_VERSION; }
const char* QsrRevision() { return QSR_REVISION; }

void AppendBuildInfo(const std::string& binary, PrometheusPage* page) {
  page->Family("qsr_build_info", "gauge",
               "The binary, the qsr version and git revision it was built from; always 1.")
      .Sample("qsr_build_info", 1,
              absl::StrFormat(R"(binary="%s",version="%s",revision="%s")", PrometheusLabel(binary),
                              PrometheusLabel(QsrVersion()), PrometheusLabel(QsrRevision())));
}

void AppendProcessMetrics(const ProcessStats& s, PrometheusPage* page) {
  page->One("process_cpu_seconds_total", "counter",
            "Total user and system CPU time spent in seconds.", s.cpu_seconds);
  page->One("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
            s.resident_bytes);
  page->One("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
            s.virtual_bytes);
  page->One("process_start_time_seconds", "gauge",
            "Start time of the process since unix epoch in seconds.", s.start_time_seconds);
  if (s.open_fds >= 0) {
    page->One("process_open_fds", "gauge", "Number of open file descriptors.", s.open_fds);
  }
  if (s.max_fds >= 0) {
    page->One("process_max_fds", "gauge", "Maximum number of open file descriptors.", s.max_fds);
  }
}

}  // namespace qsr
