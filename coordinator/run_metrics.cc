#include "coordinator/run_metrics.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "metrics/prometheus_text.h"

namespace qsr {

void RoundStats::Observe(const v1::RoundRecord& round, absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (round.seconds() <= kBuckets[i]) ++s_.cumulative[i];
  }
  ++s_.count;
  s_.sum += round.seconds();
  s_.samples += round.samples();
  if (round.digest_checked()) ++s_.checked_rounds;
  if (!round.identical()) ++s_.mismatched_rounds;
  s_.last_commit = now;
}

RoundStats::Snapshot RoundStats::Get() const {
  absl::MutexLock lock(&mu_);
  return s_;
}

namespace {

void AddRoundDurations(const RoundStats::Snapshot& r, PrometheusPage* p) {
  p->Family("qsr_round_duration_seconds", "histogram",
            "Wall time of a round (its slowest worker), from the start of its first step to the "
            "end of its averaging.");
  for (size_t i = 0; i < RoundStats::kBuckets.size(); ++i) {
    p->Sample("qsr_round_duration_seconds_bucket", r.cumulative[i],
              absl::StrFormat(R"(le="%s")", PrometheusValue(RoundStats::kBuckets[i])));
  }
  p->Sample("qsr_round_duration_seconds_bucket", r.count, R"(le="+Inf")")
      .Sample("qsr_round_duration_seconds_sum", r.sum)
      .Sample("qsr_round_duration_seconds_count", r.count);
}

void AddWorkers(const v1::GetStatusReply& s, absl::Time now, PrometheusPage* p) {
  // Per worker. The throughput is the worker's own measurement over its last round (the
  // coordinator keeps no per-worker sample count to derive it from).
  p->Family("qsr_worker_samples_per_second", "gauge",
            "Each worker's training throughput in its last round, as it measured it.");
  for (const v1::WorkerInfo& w : s.worker_info()) {
    p->Sample("qsr_worker_samples_per_second", w.samples_per_sec(),
              absl::StrFormat(R"(rank="%d",host="%s",device="%s")", w.rank(),
                              PrometheusLabel(w.host()), PrometheusLabel(w.device())));
  }
  p->Family("qsr_worker_last_seen_timestamp_seconds", "gauge",
            "When the coordinator last heard from each worker (seconds since the Unix epoch).");
  for (const v1::WorkerInfo& w : s.worker_info()) {
    p->Sample("qsr_worker_last_seen_timestamp_seconds",
              absl::ToUnixMicros(now) / 1e6 - w.last_seen_s(),
              absl::StrFormat(R"(rank="%d",host="%s",state="%s")", w.rank(),
                              PrometheusLabel(w.host()), PrometheusLabel(w.state())));
  }
}

}  // namespace

std::string RenderRunMetrics(const v1::GetStatusReply& s, const RoundStats::Snapshot& r,
                             absl::Time now) {
  PrometheusPage p;
  p.Family("qsr_info", "gauge", "The run's identity; the value is always 1.")
      .Sample(
          "qsr_info", 1,
          absl::StrFormat(R"(run_id="%s",model="%s",optimizer="%s")", PrometheusLabel(s.run_id()),
                          PrometheusLabel(s.model()), PrometheusLabel(s.optimizer())));
  p.Family("qsr_run_state", "gauge",
           "1 for the run's state (WAITING, RUNNING, REGROUPING, FINISHED, FAILED), 0 for the "
           "others.");
  for (const char* state : {"WAITING", "RUNNING", "REGROUPING", "FINISHED", "FAILED"}) {
    p.Sample("qsr_run_state", s.state() == state ? 1 : 0, absl::StrFormat(R"(state="%s")", state));
  }
  p.One("qsr_global_step", "gauge", "Global step reached by the last committed round.", s.step());
  p.One("qsr_total_steps", "gauge", "Steps the run trains in all.", s.total_steps());
  p.One("qsr_epoch", "gauge", "Epochs completed (fractional).", s.epoch());
  p.One("qsr_epochs", "gauge", "Epochs the run trains.", s.epochs());
  p.One("qsr_learning_rate", "gauge", "Learning rate at the first step of the round in flight.",
        s.lr());
  p.One("qsr_sync_period_steps", "gauge",
        "H: local steps between model averagings in the round in flight (QSR).", s.h());
  p.One("qsr_rounds_total", "counter", "Averaging rounds committed.", s.round());
  if (r.last_commit != absl::InfinitePast()) {
    p.One("qsr_last_round_timestamp_seconds", "gauge",
          "When this coordinator last committed a round (seconds since the Unix epoch).",
          absl::ToUnixMicros(r.last_commit) / 1e6);
  }
  p.Family("qsr_workers", "gauge", "Workers of the current generation, by state.")
      .Sample("qsr_workers", s.workers(), R"(state="active")")
      .Sample("qsr_workers", s.worker_info_size() - s.workers(), R"(state="left")");
  p.One("qsr_world_size", "gauge", "Workers the run needs.", s.world_size());
  p.One("qsr_generation", "gauge", "Membership generation (grows with every regroup).",
        s.generation());

  AddRoundDurations(r, &p);

  p.One("qsr_averaging_sent_per_worker_bytes_total", "counter",
        "Bytes each worker has sent in model averaging (collectives).", s.bytes_per_worker());
  p.One("qsr_samples_total", "counter",
        "Training samples processed by all workers (throughput: rate() of it).", r.samples);
  p.One("qsr_train_loss", "gauge", "Mean training loss of the last committed round.",
        s.train_loss());
  if (s.test_acc() >= 0) {
    p.One("qsr_test_accuracy_ratio", "gauge", "Test accuracy of the latest evaluation (0 to 1).",
          s.test_acc());
    p.One("qsr_test_loss", "gauge", "Test loss of the latest evaluation.", s.test_loss());
  }
  p.One("qsr_worker_failures_total", "counter",
        "Worker failures seen (a worker failed or left early, a barrier timed out).", s.failures());
  p.One("qsr_regroups_total", "counter", "Times the group was re-formed (new generation).",
        s.generation() > 0 ? s.generation() - 1 : 0);
  p.One("qsr_param_checked_rounds_total", "counter",
        "Rounds after which the workers compared their parameters' digests.", r.checked_rounds);
  p.One("qsr_param_mismatch_rounds_total", "counter",
        "Rounds after which the workers' parameters differed (should stay 0).",
        r.mismatched_rounds);
  p.One("qsr_stop_requested", "gauge", "1 once an operator has asked the run to stop.",
        s.stop_requested() ? 1 : 0);
  p.One("qsr_run_start_timestamp_seconds", "gauge",
        "When the coordinator started the run (seconds since the Unix epoch).",
        absl::ToUnixMicros(now) / 1e6 - s.elapsed_s());

  AddWorkers(s, now, &p);
  return std::move(p).str();
}

}  // namespace qsr
