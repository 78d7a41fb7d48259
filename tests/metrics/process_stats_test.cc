#include "metrics/process_stats.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/time/clock.h"
#include "metrics/prometheus_text.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

// A /proc/self/stat line whose command name holds a space and a ')', as Linux allows.
constexpr char kStat[] =
    "4242 (qsr (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 9 0 "
    "123400 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n";

TEST(ProcessStatsTest, ParsesStatCountingFieldsAfterTheCommandName) {
  ProcessStats s;
  ASSERT_TRUE(ParseProcStat(kStat, 100, 4096, 1700000000, &s).ok());
  EXPECT_DOUBLE_EQ(s.cpu_seconds, 4.0);                       // (250 + 150) ticks / 100
  EXPECT_DOUBLE_EQ(s.start_time_seconds, 1700000000 + 1234);  // boot + 123400 ticks
  EXPECT_DOUBLE_EQ(s.virtual_bytes, 104857600);
  EXPECT_DOUBLE_EQ(s.resident_bytes, 2560.0 * 4096);
}

TEST(ProcessStatsTest, ShortOrBrokenStatIsAnError) {
  ProcessStats s;
  EXPECT_FALSE(ParseProcStat("4242 qsr S 1 2 3", 100, 4096, 0, &s).ok());
  EXPECT_FALSE(ParseProcStat("4242 (qsr) S 1 2 3", 100, 4096, 0, &s).ok());
  EXPECT_FALSE(ParseProcStat(kStat, 0, 4096, 0, &s).ok());
}

TEST(ProcessStatsTest, BootTimeAndFileLimit) {
  absl::StatusOr<double> boot = ParseBootTime("cpu 1 2 3\nintr 5\nbtime 1733000000\nprocesses 9\n");
  ASSERT_TRUE(boot.ok()) << boot.status();
  EXPECT_EQ(*boot, 1733000000);
  EXPECT_FALSE(ParseBootTime("cpu 1 2 3\n").ok());
  const char* limits =
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max cpu time              unlimited            unlimited            seconds   \n"
      "Max open files            1024                 1048576              files     \n";
  absl::StatusOr<double> max = ParseMaxOpenFiles(limits);
  ASSERT_TRUE(max.ok()) << max.status();
  EXPECT_EQ(*max, 1024);
  EXPECT_EQ(
      *ParseMaxOpenFiles("Max open files            unlimited            unlimited   files\n"), -1);
  EXPECT_FALSE(ParseMaxOpenFiles("Max cpu time unlimited\n").ok());
}

TEST(ProcessStatsTest, ReadsThisProcess) {
  // Burn a little CPU so that the counter is above zero however coarse the ticks.
  volatile double x = 0;
  const absl::Time until = absl::Now() + absl::Milliseconds(30);
  while (absl::Now() < until) x = x + 1;
  absl::StatusOr<ProcessStats> s = ReadProcessStats();
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->cpu_seconds, 0);
  EXPECT_GT(s->resident_bytes, 1 << 20);
  EXPECT_GE(s->virtual_bytes, s->resident_bytes);
  const double now = absl::ToUnixMicros(absl::Now()) / 1e6;
  EXPECT_LE(s->start_time_seconds, now + 1);
  EXPECT_GT(s->start_time_seconds, now - 3600);
  // stdin, stdout, stderr at least; opening one more file shows up.
  EXPECT_GE(s->open_fds, 3);
  FILE* f = std::fopen("/proc/self/stat", "r");
  ASSERT_NE(f, nullptr);
  absl::StatusOr<ProcessStats> more = ReadProcessStats();
  std::fclose(f);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->open_fds, s->open_fds + 1);
  EXPECT_GE(s->max_fds, s->open_fds);
}

TEST(PrometheusTextTest, BuildInfoAndProcessFamilies) {
  PrometheusPage page;
  AppendBuildInfo("qsr-\"x\"", &page);
  ProcessStats s;
  s.cpu_seconds = 1.5;
  s.resident_bytes = 1024;
  s.virtual_bytes = 4096;
  s.start_time_seconds = 1700000000;
  s.open_fds = 7;
  s.max_fds = -1;  // unknown: not exported
  AppendProcessMetrics(s, &page);
  const std::string text = std::move(page).str();
  EXPECT_NE(text.find(std::string("qsr_build_info{binary=\"qsr-\\\"x\\\"\",version=\"") +
                      QsrVersion() + "\",revision=\"" + QsrRevision() + "\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_STRNE(QsrVersion(), "unknown");
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("process_start_time_seconds 1700000000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("process_open_fds 7\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("process_max_fds"), std::string::npos) << text;
  EXPECT_EQ(PrometheusValue(std::nan("")), "NaN");
  EXPECT_EQ(PrometheusValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(PrometheusLabel("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

}  // namespace
}  // namespace qsr
