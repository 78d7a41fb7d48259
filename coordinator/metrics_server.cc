#include "coordinator/metrics_server.h"

#include <cmath>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "glog/logging.h"

#ifdef QSR_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace qsr {
namespace {

// Scrapes are small and rare: two handler threads are plenty.
constexpr size_t kHandlerThreads = 2;
constexpr int kIoTimeoutS = 5;
// How long Start() waits for the listening thread to come up.
constexpr absl::Duration kStartTimeout = absl::Seconds(5);

std::string Value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return absl::StrFormat("%.10g", v);
}

// A label value, escaped as the exposition format requires.
std::string Label(const std::string& v) {
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

// Writes metric families: HELP and TYPE once, then samples.
class Page {
 public:
  Page& Family(const std::string& name, const std::string& type, const std::string& help) {
    absl::StrAppend(&out_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
    return *this;
  }
  Page& Sample(const std::string& name, double value, const std::string& labels = "") {
    absl::StrAppend(&out_, name, labels.empty() ? "" : "{" + labels + "}", " ", Value(value), "\n");
    return *this;
  }
  // A family with one unlabelled sample.
  Page& One(const std::string& name, const std::string& type, const std::string& help,
            double value) {
    return Family(name, type, help).Sample(name, value);
  }
  std::string str() && { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

void RoundStats::Observe(const v1::RoundRecord& round) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (round.seconds() <= kBuckets[i]) ++s_.cumulative[i];
  }
  ++s_.count;
  s_.sum += round.seconds();
  s_.samples += round.samples();
  if (round.digest_checked()) ++s_.checked_rounds;
  if (!round.identical()) ++s_.mismatched_rounds;
}

RoundStats::Snapshot RoundStats::Get() const {
  absl::MutexLock lock(&mu_);
  return s_;
}

std::string RenderMetrics(const v1::GetStatusReply& s, const RoundStats::Snapshot& r) {
  Page p;
  p.Family("qsr_info", "gauge", "The run's identity; the value is always 1.")
      .Sample("qsr_info", 1,
              absl::StrFormat(R"(run_id="%s",model="%s",optimizer="%s")", Label(s.run_id()),
                              Label(s.model()), Label(s.optimizer())));
  p.Family("qsr_run_state", "gauge", "1 for the run's state (WAITING, RUNNING, FINISHED, FAILED).");
  for (const char* state : {"WAITING", "RUNNING", "FINISHED", "FAILED"}) {
    p.Sample("qsr_run_state", s.state() == state ? 1 : 0, absl::StrFormat(R"(state="%s")", state));
  }
  p.One("qsr_global_step", "gauge", "Global step reached by the last committed round.", s.step());
  p.One("qsr_total_steps", "gauge", "Steps the run trains in all.", s.total_steps());
  p.One("qsr_epoch", "gauge", "Epochs completed (fractional).", s.epoch());
  p.One("qsr_epochs", "gauge", "Epochs the run trains.", s.epochs());
  p.One("qsr_learning_rate", "gauge", "Learning rate at the first step of the round in flight.",
        s.lr());
  p.One("qsr_sync_period_h", "gauge",
        "H: local steps between model averagings in the round in flight (QSR).", s.h());
  p.One("qsr_rounds_total", "counter", "Averaging rounds committed.", s.round());
  p.Family("qsr_workers", "gauge", "Workers of the current generation, by state.")
      .Sample("qsr_workers", s.workers(), R"(state="active")")
      .Sample("qsr_workers", s.worker_info_size() - s.workers(), R"(state="left")");
  p.One("qsr_world_size", "gauge", "Workers the run needs.", s.world_size());
  p.One("qsr_generation", "gauge", "Membership generation (grows with every regroup).",
        s.generation());

  p.Family("qsr_round_duration_seconds", "histogram",
           "Wall time of a round (its slowest worker), from the start of its first step to the "
           "end of its averaging.");
  for (size_t i = 0; i < RoundStats::kBuckets.size(); ++i) {
    p.Sample("qsr_round_duration_seconds_bucket", r.cumulative[i],
             absl::StrFormat(R"(le="%s")", Value(RoundStats::kBuckets[i])));
  }
  p.Sample("qsr_round_duration_seconds_bucket", r.count, R"(le="+Inf")")
      .Sample("qsr_round_duration_seconds_sum", r.sum)
      .Sample("qsr_round_duration_seconds_count", r.count);

  p.One("qsr_averaged_bytes_per_worker_total", "counter",
        "Bytes each worker has sent in model averaging (collectives).", s.bytes_per_worker());
  p.One("qsr_samples_total", "counter", "Training samples processed by all workers.", r.samples);
  p.One("qsr_samples_per_second", "gauge", "Training throughput over the recent rounds.",
        s.samples_per_sec());
  p.One("qsr_train_loss", "gauge", "Mean training loss of the last committed round.",
        s.train_loss());
  if (s.test_acc() >= 0) {
    p.One("qsr_test_accuracy", "gauge", "Test accuracy of the latest evaluation.", s.test_acc());
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
  p.One("qsr_elapsed_seconds", "gauge", "Seconds since the coordinator started the run.",
        s.elapsed_s());

  p.Family("qsr_worker_samples_per_second", "gauge", "Each worker's throughput in its last round.");
  for (const v1::WorkerInfo& w : s.worker_info()) {
    p.Sample("qsr_worker_samples_per_second", w.samples_per_sec(),
             absl::StrFormat(R"(rank="%d",host="%s",device="%s")", w.rank(), Label(w.host()),
                             Label(w.device())));
  }
  p.Family("qsr_worker_last_seen_seconds", "gauge",
           "Seconds since the coordinator last heard from each worker.");
  for (const v1::WorkerInfo& w : s.worker_info()) {
    p.Sample("qsr_worker_last_seen_seconds", w.last_seen_s(),
             absl::StrFormat(R"(rank="%d",host="%s")", w.rank(), Label(w.host())));
  }
  return std::move(p).str();
}

#ifdef QSR_HAVE_HTTPLIB

struct MetricsServer::Http {
  httplib::Server server;
  std::thread thread;
};

MetricsServer::MetricsServer() : http_(std::make_unique<Http>()) {}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const RunController* controller,
                                                                    const RoundStats* stats,
                                                                    const std::string& host,
                                                                    int port) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics port ", port, " is not in [0, 65535]"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  httplib::Server& http = server->http_->server;
  http.new_task_queue = [] { return new httplib::ThreadPool(kHandlerThreads); };
  // httplib's default also sets SO_REUSEPORT, with which a second coordinator on this host would
  // silently share the port; SO_REUSEADDR alone still allows a restart while old sockets linger.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.set_read_timeout(kIoTimeoutS, 0);
  http.set_write_timeout(kIoTimeoutS, 0);
  http.Get("/metrics", [controller, stats](const httplib::Request&, httplib::Response& res) {
    res.set_content(RenderMetrics(controller->Status(absl::Now()), stats->Get()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("qsr-coordinator: metrics at /metrics\n", "text/plain");
  });

  // "[::]" in a gRPC address is "::" to the socket API.
  std::string bind_host = host;
  if (bind_host.size() >= 2 && bind_host.front() == '[' && bind_host.back() == ']') {
    bind_host = bind_host.substr(1, bind_host.size() - 2);
  }
  if (port == 0) {
    server->port_ = http.bind_to_any_port(bind_host.c_str());
  } else if (http.bind_to_port(bind_host.c_str(), port)) {
    server->port_ = port;
  }
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", host, ":", port,
                                               " (address in use, or not a local address?)"));
  }
  server->http_->thread = std::thread([&http] { http.listen_after_bind(); });
  // Wait until the loop runs, so that a Shutdown() right after Start() cannot miss it.
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (!http.is_running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  if (!http.is_running()) {
    // The thread may still start and use the server: leave both to the process, on purpose.
    server->http_->thread.detach();
    (void)server.release();
    return absl::InternalError("the metrics HTTP server did not start within 5 s");
  }
  LOG(INFO) << "metrics on http://" << host << ":" << server->port_ << "/metrics";
  return server;
}

void MetricsServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  http_->server.stop();
  if (http_->thread.joinable()) http_->thread.join();
}

#else  // QSR_HAVE_HTTPLIB

struct MetricsServer::Http {};

MetricsServer::MetricsServer() = default;

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const RunController*,
                                                                    const RoundStats*,
                                                                    const std::string&, int) {
  return absl::UnimplementedError(
      "this qsr-coordinator was built without cpp-httplib (libcpp-httplib-dev): no metrics");
}

void MetricsServer::Shutdown() { shut_down_ = true; }

#endif  // QSR_HAVE_HTTPLIB

MetricsServer::~MetricsServer() { Shutdown(); }

}  // namespace qsr
