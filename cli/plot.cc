#include "cli/plot.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

extern char** environ;

namespace qsr {
namespace {

// The raw value of `key` in a flat one-line JSON object, as written by JsonObject.
std::optional<std::string> RawField(const std::string& json, const std::string& key) {
  const std::string needle = absl::StrCat("\"", key, "\":");
  size_t at = json.find(needle);
  if (at == std::string::npos) return std::nullopt;
  size_t start = at + needle.size();
  if (start < json.size() && json[start] == '"') {
    std::string out;
    for (size_t i = start + 1; i < json.size() && json[i] != '"'; ++i) {
      if (json[i] == '\\' && i + 1 < json.size()) ++i;
      out += json[i];
    }
    return out;
  }
  size_t end = start;
  while (end < json.size() && json[end] != ',' && json[end] != '}') ++end;
  return json.substr(start, end - start);
}

std::optional<double> NumberField(const std::string& json, const std::string& key) {
  std::optional<std::string> raw = RawField(json, key);
  double v;
  if (!raw || !absl::SimpleAtod(*raw, &v)) return std::nullopt;
  return v;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses every non-empty line of `path` with `parse`; an error names the file and line.
template <typename T, typename Parse>
absl::Status ReadJsonl(const std::string& path, std::vector<T>* out, Parse parse) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    std::optional<T> item = parse(line);
    if (!item) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", n, ": not a record this version understands: ", line.substr(0, 120)));
    }
    out->push_back(*item);
  }
  return absl::OkStatus();
}

// A string for a single-quoted gnuplot string ('' is a quote inside one).
std::string Quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// The time limit is kept by polling: gnuplot is one short-lived child.
absl::Status RunWithTimeout(const std::vector<std::string>& argv, const std::string& log,
                            absl::Duration timeout) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int err = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", std::strerror(err),
                     err == ENOENT ? " (install gnuplot: apt-get install gnuplot-nox)" : ""));
  }
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return absl::InternalError("waitpid failed");
    if (absl::Now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat(argv[0], " did not finish within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string output = ReadAll(log);
    if (output.size() > 2000) output = output.substr(output.size() - 2000);
    return absl::InternalError(
        absl::StrCat(argv[0], " failed (", WIFEXITED(status) ? "exit code " : "signal ",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), "): ", output));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PlotData> ReadRunDir(const std::string& dir) {
  PlotData data;
  const std::string rounds = dir + "/rounds.jsonl";
  if (!std::filesystem::exists(rounds)) {
    return absl::NotFoundError(
        absl::StrCat(dir, " is not a run directory (no rounds.jsonl; see the README)"));
  }
  absl::Status s = ReadJsonl(rounds, &data.rounds, [](const std::string& line) {
    std::optional<double> step = NumberField(line, "step"), h = NumberField(line, "h"),
                          lr = NumberField(line, "lr"), loss = NumberField(line, "train_loss");
    std::optional<PlotData::Round> r;
    if (step && h && lr && loss) {
      r = PlotData::Round{static_cast<int64_t>(*step), static_cast<int64_t>(*h), *lr, *loss};
    }
    return r;
  });
  if (!s.ok()) return s;
  const std::string evals = dir + "/evals.jsonl";
  if (std::filesystem::exists(evals)) {
    s = ReadJsonl(evals, &data.evals, [](const std::string& line) {
      std::optional<double> step = NumberField(line, "step"), acc = NumberField(line, "test_acc"),
                            loss = NumberField(line, "test_loss");
      std::optional<PlotData::Eval> e;
      if (step && acc) e = PlotData::Eval{static_cast<int64_t>(*step), *acc, loss.value_or(0)};
      return e;
    });
    if (!s.ok()) return s;
  }
  const std::string summary = ReadAll(dir + "/summary.json");
  std::string run_id = RawField(summary, "run_id").value_or("");
  if (run_id.empty()) run_id = std::filesystem::path(dir).filename().string();
  if (run_id.empty()) run_id = dir;
  data.title = run_id;
  if (std::optional<std::string> model = RawField(summary, "model")) {
    absl::StrAppend(&data.title, ": ", *model, " / ", RawField(summary, "optimizer").value_or("?"));
  }
  if (std::optional<std::string> state = RawField(summary, "state")) {
    absl::StrAppend(&data.title, " (", *state, ")");
  }
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
