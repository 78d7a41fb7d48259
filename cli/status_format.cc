#include "cli/status_format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/json/json_line.h"
#include "qsr/v1/tool_output.pb.h"

namespace qsr {

std::string HumanBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.1f %s", v, units[u]);
}

std::string HumanDuration(double seconds) {
  if (seconds < 0) return "--";
  const int64_t t = static_cast<int64_t>(seconds + 0.5);
  if (t < 60) return absl::StrCat(t, "s");
  if (t < 3600) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
}

std::string WorkerJson(const v1::WorkerInfo& w) { return ToJsonLine(w); }

std::string WorkersTable(const v1::GetStatusReply& s) {
  if (s.worker_info_size() == 0) {
    return absl::StrFormat("no worker has joined yet (0 of %d)\n", s.world_size());
  }
  std::string out = absl::StrFormat("%-5s %-24s %-16s %-8s %-7s %14s %10s\n", "RANK", "WORKER",
                                    "HOST", "DEVICE", "STATE", "LAST HEARTBEAT", "SAMPLES/S");
  for (const v1::WorkerInfo& w : s.worker_info()) {
    absl::StrAppend(
        &out, absl::StrFormat("%-5d %-24s %-16s %-8s %-7s %14s %10.0f\n", w.rank(), w.worker_id(),
                              w.host(), w.device(), w.state(),
                              absl::StrFormat("%.1fs ago", w.last_seen_s()), w.samples_per_sec()));
  }
  return out;
}

std::string WatchLine(const v1::GetStatusReply& s, double eta_s, int bar_width) {
  const double frac =
      s.total_steps() > 0 ? std::min(1.0, static_cast<double>(s.step()) / s.total_steps()) : 0.0;
  const int filled = static_cast<int>(frac * bar_width + 0.5);
  std::string line =
      absl::StrCat("[", std::string(filled, '#'), std::string(bar_width - filled, '-'), "] ");
  absl::StrAppend(
      &line, absl::StrFormat("%5.1f%% step %d/%d ep %.2f | lr %.4g H %d | loss %.4f", 100 * frac,
                             s.step(), s.total_steps(), s.epoch(), s.lr(), s.h(), s.train_loss()));
  if (s.test_acc() >= 0) absl::StrAppend(&line, absl::StrFormat(" | acc %.4f", s.test_acc()));
  absl::StrAppend(&line, absl::StrFormat(" | %.0f samples/s | ETA %s", s.samples_per_sec(),
                                         HumanDuration(eta_s)));
  if (s.state() != "RUNNING") absl::StrAppend(&line, " | ", s.state());
  return line;
}

double EstimateEtaSeconds(const v1::GetStatusReply& s, int64_t step0, double seconds_since) {
  const int64_t left = s.total_steps() - s.step();
  if (s.step() > step0 && seconds_since > 0) {
    return left * seconds_since / static_cast<double>(s.step() - step0);
  }
  if (s.step() > 0 && s.elapsed_s() > 0) {
    return left * s.elapsed_s() / static_cast<double>(s.step());
  }
  return -1;
}

std::string StatusJson(const v1::GetStatusReply& s) { return ToJsonLine(s); }

std::string ProgressLine(const v1::GetStatusReply& s) {
  const double pct = s.total_steps() > 0 ? 100.0 * s.step() / s.total_steps() : 0.0;
  std::string line = absl::StrFormat(
      "step %d/%d (%.0f%%) epoch %.2f | lr %.4g H %d | round %d | loss %.4f | %.0f samples/s",
      s.step(), s.total_steps(), pct, s.epoch(), s.lr(), s.h(), s.round(), s.train_loss(),
      s.samples_per_sec());
  if (s.test_acc() >= 0) absl::StrAppend(&line, absl::StrFormat(" | test_acc %.4f", s.test_acc()));
  return line;
}

std::string StatusTable(const v1::GetStatusReply& s) {
  std::string out;
  auto row = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(&out, absl::StrFormat("%-14s %s\n", k, v));
  };
  row("run", s.run_id());
  row("state", s.state() + (s.message().empty() ? "" : " (" + s.message() + ")"));
  row("model", absl::StrCat(s.model(), " / ", s.optimizer()));
  row("step", absl::StrFormat("%d / %d (%.1f%%)", s.step(), s.total_steps(),
                              s.total_steps() ? 100.0 * s.step() / s.total_steps() : 0.0));
  row("epoch", absl::StrFormat("%.2f / %d", s.epoch(), s.epochs()));
  row("lr", absl::StrFormat("%.6g", s.lr()));
  row("H", absl::StrCat(s.h()));
  row("round", absl::StrCat(s.round(), " completed"));
  row("workers",
      absl::StrCat(s.workers(), " / ", s.world_size(), " (generation ", s.generation(), ")"));
  row("samples/s", absl::StrFormat("%.0f", s.samples_per_sec()));
  row("train loss", absl::StrFormat("%.4f", s.train_loss()));
  row("test acc", s.test_acc() >= 0 ? absl::StrFormat("%.4f", s.test_acc()) : "-");
  row("sent/worker", HumanBytes(s.bytes_per_worker()));
  row("elapsed", absl::StrFormat("%.1f s", s.elapsed_s()));
  row("failures", absl::StrCat(s.failures()));
  if (s.stop_requested()) row("stop", "requested by an operator");
  if (!s.run_dir().empty()) row("run dir", s.run_dir());
  if (s.worker_info_size() > 0) absl::StrAppend(&out, "\n", WorkersTable(s));
  return out;
}

std::string RoundRecordJson(const v1::RoundRecord& r) { return ToJsonLine(r); }

std::string RoundJson(const Round& r) {
  v1::PlannedRound line;
  line.set_round(static_cast<int32_t>(r.index));
  line.set_step(static_cast<int32_t>(r.start_step));
  line.set_lr(r.lr);
  line.set_h(static_cast<int32_t>(r.h));
  line.set_eval_after(r.eval_after);
  line.set_checkpoint_after(r.checkpoint_after);
  return ToJsonLine(line);
}

std::string PlanSummaryJson(const PlanSummary& s, double alpha) {
  v1::PlanSummaryLine line;
  line.set_summary(true);
  line.set_rounds(static_cast<int32_t>(s.rounds));
  line.set_total_steps(static_cast<int32_t>(s.total_steps));
  line.set_mean_h(s.mean_h);
  line.set_max_h(static_cast<int32_t>(s.max_h));
  line.set_sync_share(s.sync_share);
  line.set_alpha(alpha);
  return ToJsonLine(line);
}

}  // namespace qsr
