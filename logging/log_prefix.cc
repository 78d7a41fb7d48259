#include "logging/log_prefix.h"

#include <iomanip>
#include <mutex>
#include <ostream>

#include "glog/logging.h"

namespace qsr {
namespace {

std::mutex g_mu;
std::string g_run = "-";   // guarded by g_mu
std::string g_rank = "-";  // guarded by g_mu

// glog's own layout ("I1125 14:03:07.123456 4711 file.cc:312]") with the context added before
// the file name.
void Prefix(std::ostream& s, const google::LogMessageInfo& l, void*) {
  const char fill = s.fill('0');
  s << l.severity[0] << std::setw(2) << 1 + l.time.month() << std::setw(2) << l.time.day() << ' '
    << std::setw(2) << l.time.hour() << ':' << std::setw(2) << l.time.min() << ':' << std::setw(2)
    << l.time.sec() << '.' << std::setw(6) << l.time.usec() << ' ';
  s.fill(' ');
  s << std::setw(5) << l.thread_id << ' ' << LogContext() << ' ' << l.filename << ':'
    << l.line_number << ']';
  s.fill(fill);
}

}  // namespace

void InitLogging(const char* argv0) { google::InitGoogleLogging(argv0, &Prefix, nullptr); }

void SetLogContext(const std::string& run_id, const std::string& rank) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_run = run_id.empty() ? "-" : run_id;
  g_rank = rank.empty() ? "-" : rank;
}

std::string LogContext() {
  std::lock_guard<std::mutex> lock(g_mu);
  return "run=" + g_run + " rank=" + g_rank;
}

}  // namespace qsr
