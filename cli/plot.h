// Pictures of a run: learning rate, H, training loss and test accuracy against the global step,
// drawn by gnuplot (Debian's gnuplot-nox) as a PNG or an SVG.
//
// The data comes from a run directory (rounds.jsonl, evals.jsonl, summary.json) or from a live
// coordinator (ListRounds, ListEvals, GetStatus). Pure functions except RenderPlot, which runs
// gnuplot in a child process with a time limit. Thread-compatible.
#ifndef QSR_CLI_PLOT_H_
#define QSR_CLI_PLOT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "qsr/v1/coordinator.pb.h"

namespace qsr {

struct PlotData {
  struct Round {
    int64_t step = 0;  // first step of the round
    int64_t h = 0;
    double lr = 0;
    double train_loss = 0;
  };
  struct Eval {
    int64_t step = 0;
    double test_acc = 0;
    double test_loss = 0;
  };
  std::string title;
  std::vector<Round> rounds;
  std::vector<Eval> evals;
};

// Reads DIR/rounds.jsonl and DIR/evals.jsonl (absent evals: none yet); the title comes from
// DIR/summary.json when present. An unreadable or malformed line is an error naming the file
// and the line.
absl::StatusOr<PlotData> ReadRunDir(const std::string& dir);

PlotData PlotDataFrom(const v1::GetStatusReply& status, const v1::ListRoundsReply& rounds,
                      const v1::ListEvalsReply& evals);

// The gnuplot script that draws `data` (whose columns are in `rounds_file` and `evals_file`) into
// `output`; the terminal follows the extension (.png: pngcairo, .svg: svg).
absl::StatusOr<std::string> GnuplotScript(const PlotData& data, const std::string& rounds_file,
                                          const std::string& evals_file, const std::string& output);

// Draws `data` into `output` (.png or .svg) with `gnuplot` (a program on PATH or a path), within
// `timeout`.
absl::Status RenderPlot(const PlotData& data, const std::string& output, absl::Duration timeout,
                        const std::string& gnuplot = "gnuplot");

}  // namespace qsr

#endif  // QSR_CLI_PLOT_H_
