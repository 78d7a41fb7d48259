#include "cli/plot.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/process_group.h"
#include "cli/restart_policy.h"
#include "cli/run_dir.h"

namespace qsr {
namespace {

// A string for a single-quoted gnuplot string ('' is a quote inside one).
std::string Quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// gnuplot is one short-lived child: its output goes to `log`, shown only when it fails.
absl::Status RunWithTimeout(const std::vector<std::string>& argv, const std::string& log,
                            absl::Duration timeout) {
  ProcessGroup group;
  ProcessGroup::Output output;
  output.echo = false;
  output.log_path = log;
  if (absl::StatusOr<int> started = group.Spawn(argv[0], argv, output); !started.ok()) {
    return started.status();
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (!group.ExitCode(0) && absl::Now() < deadline) group.Pump(absl::Milliseconds(10));
  if (!group.ExitCode(0)) {
    group.TerminateAll(absl::ZeroDuration());
    return absl::DeadlineExceededError(
        absl::StrCat(argv[0], " did not finish within ", absl::FormatDuration(timeout)));
  }
  const int code = *group.ExitCode(0);
  if (code == 0) return absl::OkStatus();
  std::string text(absl::StripTrailingAsciiWhitespace(ReadFileOrEmpty(log)));
  if (code == kCannotExec) {
    return absl::FailedPreconditionError(
        absl::StrCat(text.empty() ? absl::StrCat("cannot run ", argv[0]) : text,
                     " (install gnuplot: apt-get install gnuplot-nox)"));
  }
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return absl::InternalError(absl::StrCat(argv[0], " failed (", DescribeExit(code), "): ", text));
}

}  // namespace

absl::StatusOr<PlotData> ReadRunDir(const std::string& dir) {
  const std::string rounds = dir + "/rounds.jsonl";
  if (!std::filesystem::exists(rounds)) {
    return absl::NotFoundError(
        absl::StrCat(dir, " is not a run directory (no rounds.jsonl; see the README)"));
  }
  absl::StatusOr<std::vector<v1::RoundRecord>> round_records = ReadRoundsJsonl(rounds);
  if (!round_records.ok()) return round_records.status();
  std::vector<v1::EvalReport> eval_records;
  const std::string evals = dir + "/evals.jsonl";
  if (std::filesystem::exists(evals)) {
    absl::StatusOr<std::vector<v1::EvalReport>> read = ReadEvalsJsonl(evals);
    if (!read.ok()) return read.status();
    eval_records = *std::move(read);
  }
  PlotData data;
  for (const v1::RoundRecord& r : *round_records) {
    data.rounds.push_back({r.step(), r.h(), r.lr(), r.train_loss()});
  }
  for (const v1::EvalReport& e : eval_records) {
    data.evals.push_back({e.step(), e.test_acc(), e.test_loss()});
  }
  // An unreadable summary (the run is still going) leaves the title to the folder's name.
  const RunSummary summary =
      ParseRunSummary(ReadFileOrEmpty(dir + "/summary.json")).value_or(RunSummary());
  std::string run_id = summary.run_id;
  if (run_id.empty()) run_id = std::filesystem::path(dir).filename().string();
  if (run_id.empty()) run_id = dir;
  data.title = run_id;
  if (summary.has_model) {
    absl::StrAppend(&data.title, ": ", summary.model, " / ",
                    summary.optimizer.empty() ? "?" : summary.optimizer);
  }
  if (!summary.state.empty()) absl::StrAppend(&data.title, " (", summary.state, ")");
  return data;
}

PlotData PlotDataFrom(const v1::GetStatusReply& status, const v1::ListRoundsReply& rounds,
                      const v1::ListEvalsReply& evals) {
  PlotData data;
  data.title = absl::StrCat(status.run_id(), ": ", status.model(), " / ", status.optimizer(), " (",
                            status.state(), ")");
  for (const v1::RoundRecord& r : rounds.rounds()) {
    data.rounds.push_back({r.step(), r.h(), r.lr(), r.train_loss()});
  }
  for (const v1::EvalReport& e : evals.evals()) {
    data.evals.push_back({e.step(), e.test_acc(), e.test_loss()});
  }
  return data;
}

absl::StatusOr<std::string> GnuplotScript(const PlotData& data, const std::string& rounds_file,
                                          const std::string& evals_file,
                                          const std::string& output) {
  std::string terminal;
  if (absl::EndsWithIgnoreCase(output, ".png")) {
    terminal = "pngcairo size 1000,1200 noenhanced font 'sans,10'";
  } else if (absl::EndsWithIgnoreCase(output, ".svg")) {
    terminal = "svg size 1000,1200 dynamic noenhanced font 'sans,10'";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot tell the picture format of ", output, ": name it *.png or *.svg"));
  }
  if (data.rounds.empty()) {
    return absl::FailedPreconditionError("nothing to plot: no round has completed yet");
  }
  const int64_t last_step = data.rounds.back().step + data.rounds.back().h;
  std::string s;
  absl::StrAppend(&s, "set terminal ", terminal, "\n", "set output ", Quoted(output), "\n",
                  "set multiplot layout 4,1 title ", Quoted(data.title), " font 'sans,12'\n",
                  "set grid\nset key off\nset lmargin 12\nset rmargin 4\n",
                  absl::StrFormat("set xrange [0:%d]\n", std::max<int64_t>(last_step, 1)),
                  "set format y '%g'\n");
  // rounds: step h lr train_loss (one extra row at the end so that the last round has a width).
  absl::StrAppend(&s, "set ylabel 'learning rate'\n", "plot ", Quoted(rounds_file),
                  " using 1:3 with steps lw 2 lc rgb '#1f77b4'\n");
  absl::StrAppend(&s, "set ylabel 'H (local steps)'\nset yrange [0:*]\n", "plot ",
                  Quoted(rounds_file), " using 1:2 with steps lw 2 lc rgb '#ff7f0e'\n",
                  "set autoscale y\n");
  absl::StrAppend(&s, "set ylabel 'train loss'\n", "plot ", Quoted(rounds_file),
                  " using 1:4 with lines lw 1.5 lc rgb '#2ca02c'\n");
  absl::StrAppend(&s, "set ylabel 'test accuracy'\nset xlabel 'step'\n");
  if (data.evals.empty()) {
    absl::StrAppend(&s, "set yrange [0:1]\n",
                    "set label 1 'no evaluation yet' at graph 0.5, graph 0.5 center\n", "plot 2\n");
  } else {
    absl::StrAppend(&s, "plot ", Quoted(evals_file),
                    " using 1:2 with linespoints lw 2 pt 7 ps 0.8 lc rgb '#d62728'\n");
  }
  absl::StrAppend(&s, "unset multiplot\nset output\n");
  return s;
}

absl::Status RenderPlot(const PlotData& data, const std::string& output, absl::Duration timeout,
                        const std::string& gnuplot) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/qsrctl-plot-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot create a temporary directory: ", std::strerror(errno)));
  }
  const std::string dir = templ;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};

  const std::string rounds_file = dir + "/rounds.dat", evals_file = dir + "/evals.dat";
  {
    std::ofstream out(rounds_file);
    out << "# step h lr train_loss\n";
    for (const PlotData::Round& r : data.rounds) {
      out << absl::StrFormat("%d %d %.10g %.10g\n", r.step, r.h, r.lr, r.train_loss);
    }
    if (!data.rounds.empty()) {
      const PlotData::Round& r = data.rounds.back();
      out << absl::StrFormat("%d %d %.10g %.10g\n", r.step + r.h, r.h, r.lr, r.train_loss);
    }
    std::ofstream evals(evals_file);
    evals << "# step test_acc test_loss\n";
    for (const PlotData::Eval& e : data.evals) {
      evals << absl::StrFormat("%d %.10g %.10g\n", e.step, e.test_acc, e.test_loss);
    }
    if (!out || !evals) return absl::InternalError("cannot write the plot's data files in " + dir);
  }
  absl::StatusOr<std::string> script = GnuplotScript(data, rounds_file, evals_file, output);
  if (!script.ok()) return script.status();
  const std::string script_file = dir + "/plot.gp";
  std::ofstream(script_file) << *script;
  absl::Status s = RunWithTimeout({gnuplot, script_file}, dir + "/gnuplot.log", timeout);
  if (!s.ok()) return s;
  std::error_code ec;
  if (std::filesystem::file_size(output, ec) == 0 || ec) {
    return absl::InternalError(absl::StrCat("gnuplot wrote nothing to ", output));
  }
  return absl::OkStatus();
}

}  // namespace qsr
