#include "agent/host_agent.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace qsr {
namespace {

// The agent relays what the coordinator accepts (its own bound is 4 MiB + 64 KiB per request);
// it does not judge sizes itself.
constexpr int kMaxRelayedMessageBytes = 16 << 20;
// Longest a flush may run late when nothing wakes the flusher (a bound, not a tick).
constexpr absl::Duration kMaxFlushSleep = absl::Seconds(1);

}  // namespace

absl::StatusOr<std::unique_ptr<HostAgent>> HostAgent::Start(Options options) {
  if (options.coordinator.empty()) {
    return absl::InvalidArgumentError(
        "--coordinator is empty; allowed: HOST:PORT of the coordinator");
  }
  const bool unix_socket = absl::StartsWith(options.listen, "unix:");
  if (!unix_socket && !IsLoopbackListen(options.listen)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", options.listen,
                     " is not local; allowed: a loopback HOST:PORT (127.0.0.1, [::1], localhost) "
                     "or unix:PATH (the agent serves its own host's workers, without a token)"));
  }
  if (options.window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--window is ", absl::FormatDuration(options.window), "; allowed: above 0"));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxRelayedMessageBytes);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      MakeChannel(options.coordinator, options.security, args);
  if (!channel.ok()) return channel.status();

  std::unique_ptr<HostAgent> agent(new HostAgent());
  agent->service_ =
      std::make_unique<AgentService>(std::move(*channel), options.security.token, options.window);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &agent->port_);
  builder.RegisterService(agent->service_.get());
  builder.SetMaxReceiveMessageSize(kMaxRelayedMessageBytes);
  agent->server_ = builder.BuildAndStart();
  if (agent->server_ == nullptr || (!unix_socket && agent->port_ == 0)) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen,
                                               " (address in use, or not HOST:PORT / unix:PATH?)"));
  }
  agent->address_ = unix_socket ? options.listen
                                : absl::StrCat(options.listen.substr(0, options.listen.rfind(':')),
                                               ":", agent->port_);
  agent->flusher_ = std::thread([a = agent.get()] { a->FlushLoop(); });
  return agent;
}

HostAgent::~HostAgent() { Shutdown(); }

void HostAgent::FlushLoop() {
  while (!stop_.HasBeenNotified()) {
    const absl::Time now = absl::Now();
    const absl::Time next = service_->FlushExpired(now);
    service_->WaitForWork(std::min(next, now + kMaxFlushSleep));
  }
}

void HostAgent::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  stop_.Notify();
  if (service_ != nullptr) service_->Shutdown();  // wakes the flusher
  if (flusher_.joinable()) flusher_.join();
  if (server_ != nullptr) {
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    server_->Wait();
  }
  if (service_ != nullptr && !service_->AwaitIdle(absl::Now() + absl::Seconds(5))) {
    LOG(ERROR) << "qsr-agent: upstream calls still pending 5 s after shutdown";
  }
}

}  // namespace qsr
