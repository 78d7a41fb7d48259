#include "coordinator/coordinator_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/connection_security.h"
#include "glog/logging.h"

namespace qsr {
namespace {

// How often expired waits are failed. Bounds how late a timeout is reported, not training speed.
constexpr absl::Duration kTickInterval = absl::Milliseconds(100);

// The largest request accepted: the largest rendezvous value plus room for its key and framing.
constexpr int kMaxReceiveMessageBytes = (4 << 20) + (64 << 10);

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(const Recipe& recipe,
                                                                            Options options) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(options.security);
  if (!credentials.ok()) return credentials.status();
  if (!IsLoopbackListen(options.listen)) {
    if (!options.security.UsesTls()) {
      LOG(WARNING) << "listening on " << options.listen
                   << " (not loopback) without TLS: traffic, including the run token, is "
                      "readable on the network; give --tls-cert and --tls-key";
    }
    if (options.security.token.empty()) {
      LOG(WARNING) << "listening on " << options.listen
                   << " (not loopback) without a token: anyone who reaches it can join or stop "
                      "the run; give --token-file";
    }
  }
  std::unique_ptr<CoordinatorServer> server(new CoordinatorServer());
  std::unique_ptr<RunLog> log;
  if (!options.run_dir.empty()) {
    absl::StatusOr<std::unique_ptr<RunLog>> opened =
        RunLog::Open(options.run_dir, RecipeToYaml(recipe));
    if (!opened.ok()) return opened.status();
    log = std::move(*opened);
  }
  // Feed the round statistics (metrics) as rounds commit, besides any hook the caller set.
  RoundStats* stats = &server->round_stats_;
  options.run.on_round_committed =
      [stats, user = std::move(options.run.on_round_committed)](const v1::RoundRecord& round) {
        stats->Observe(round, absl::Now());
        if (user) user(round);
      };
  server->controller_ = std::make_unique<RunController>(recipe, options.run, std::move(log),
                                                        options.journal, options.recovered);
  server->store_ = std::make_unique<KvStore>();
  server->guard_ =
      std::make_unique<TokenGuard>(options.security.token, options.security.token_protect_reads);
  server->service_ = std::make_unique<CoordinatorService>(
      server->controller_.get(), server->store_.get(), server->guard_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen, " (address in use, or not HOST:PORT?)"));
  }
  server->host_ = options.listen.substr(0, options.listen.rfind(':'));
  if (options.metrics_port >= 0) {
    const RunController* controller = server->controller_.get();
    const RoundStats* stats = &server->round_stats_;
    absl::StatusOr<std::unique_ptr<MetricsServer>> metrics = MetricsServer::Start(
        [controller, stats] {
          const absl::Time now = absl::Now();
          return RenderRunMetrics(controller->Status(now), stats->Get(), now);
        },
        "qsr-coordinator", server->host_, options.metrics_port);
    if (!metrics.ok()) return metrics.status();  // the destructor stops the gRPC server
    server->metrics_ = std::move(*metrics);
  }
  server->ticker_ = std::thread([s = server.get()] { s->TickLoop(); });
  return server;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

std::string CoordinatorServer::address() const { return absl::StrCat(host_, ":", port_); }

void CoordinatorServer::TickLoop() {
  while (!stop_.WaitForNotificationWithTimeout(kTickInterval)) {
    absl::Time now = absl::Now();
    controller_->Tick(now);
    store_->ExpireWaiters(now);
  }
}

void CoordinatorServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  stop_.Notify();
  if (ticker_.joinable()) ticker_.join();
  if (metrics_) metrics_->Shutdown();
  // Pending waits are failed first so that Shutdown does not wait for their deadlines.
  if (store_ != nullptr) store_->ExpireWaiters(absl::InfiniteFuture());
  if (server_ != nullptr) {  // null when it failed to start
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    server_->Wait();
  }
}

}  // namespace qsr
