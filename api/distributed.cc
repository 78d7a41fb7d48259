#include "qsr/distributed.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <exception>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/coordinator_client.h"
#include "client/report_sender.h"
#include "worker/comm/c10d_store.h"
#include "worker/comm/communicator_factory.h"
#include "worker/joined_group.h"

namespace qsr {

struct DistributedContext::Impl {
  int rank = 0;
  int size = 1;
  int local_rank = -1;
  int local_size = -1;
  std::string device = "cpu";
  std::string run_id;
  int64_t generation = 0;
  std::optional<Recipe> recipe;
  bool finished = false;
  // Declared in dependency order, so destruction runs from the communicator (which closes its
  // connections) back to the coordinator client the store talks through.
  std::unique_ptr<CoordinatorClient> client;
  // With a coordinator: the rounds reported (ReportRound), sent off the training thread.
  std::unique_ptr<ReportSender> reports;
  int64_t next_round = 0;  // the number the next reported round gets
  // Under torchrun's agent store: the agent's whole store, of which `store` is this attempt's view.
  std::unique_ptr<Store> agent_store;
  std::unique_ptr<Store> store;  // C10dStore, InMemoryStore or CoordinatorStore
  std::unique_ptr<Communicator> comm;
  // With a coordinator: this process's membership, as a worker holds it (join, heartbeats that
  // abort comm when the coordinator ends the generation, leave); destroyed before comm, which it
  // watches.
  std::unique_ptr<JoinedGroup> group;
  // The communicator's keys (with a coordinator, the group's view of its store): used while
  // connecting only.
  std::unique_ptr<Store> scoped;
};

namespace {

constexpr absl::Duration kDefaultStaticTimeout = absl::Minutes(5);
constexpr absl::Duration kDefaultJoinTimeout = absl::Seconds(60);
// Finish() sends the rounds still queued for the coordinator within this bound.
constexpr absl::Duration kReportFlushTimeout = absl::Seconds(30);

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || absl::StartsWith(host, "127.");
}

// The address this process's transport binds and advertises (see distributed.h).
std::string TransportHost(const DistributedOptions& options, const std::string& peer_host) {
  if (!options.host.empty()) return options.host;
  if (const char* env = std::getenv("QSR_HOST"); env != nullptr && *env != '\0') return env;
  if (IsLoopback(peer_host)) return "127.0.0.1";
  return HostName();
}

// HOST of HOST:PORT ([v6]:PORT too).
std::string HostOf(const std::string& address) {
  if (absl::StartsWith(address, "[")) {
    const size_t end = address.find(']');
    return end == std::string::npos ? address : address.substr(1, end - 1);
  }
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// Builds the communicator through impl->scoped and waits until every rank has done so: a rank
// that returned from Init while a peer still read rendezvous keys could otherwise take rank 0's
// store away from under that peer.
absl::Status Connect(DistributedContext::Impl& impl, const DistributedOptions& options,
                     const std::string& peer_host, absl::Duration timeout) {
  if (absl::Status s = CheckDevice(impl.device); !s.ok()) return s;
  CommunicatorOptions comm_options;
  comm_options.hostname = TransportHost(options, peer_host);
  comm_options.timeout = timeout;
  absl::StatusOr<std::unique_ptr<Communicator>> comm = absl::InternalError("unset");
  try {
    comm = CreateCommunicator(torch::Device(impl.device), impl.scoped.get(), impl.rank, impl.size,
                              comm_options);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("creating the communicator: ", e.what()));
  }
  if (!comm.ok()) return comm.status();
  impl.comm = std::move(*comm);
  try {
    torch::Tensor one = torch::ones({1}, torch::TensorOptions().device(torch::Device(impl.device)));
    if (absl::Status s = impl.comm->AllReduceSum(one); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("barrier after connecting: ", s.message()));
    }
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("barrier after connecting: ", e.what()));
  }
  return absl::OkStatus();
}

// An optional variable: `fallback` when unset or empty.
absl::StatusOr<int> OptionalIntFromEnvironment(const char* name, int min, int max, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed) || parsed < min || parsed > max) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, "=", value,
                                                   " is not an integer in [", min, ", ", max, "]"));
  }
  return parsed;
}

// "cuda" means this process's GPU on its machine when the launcher says which one it is.
std::string DeviceFor(const std::string& device, int local_rank) {
  if (device == "cuda" && local_rank >= 0) return absl::StrCat("cuda:", local_rank);
  return device;
}

absl::StatusOr<int> IntFromEnvironment(const char* name, int min, int max) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat("environment variable ", name,
                     " is not set; a static world needs RANK, WORLD_SIZE, MASTER_ADDR and "
                     "MASTER_PORT (as torchrun sets them)"));
  }
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed) || parsed < min || parsed > max) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, "=", value,
                                                   " is not an integer in [", min, ", ", max, "]"));
  }
  return parsed;
}

}  // namespace

DistributedContext::DistributedContext(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DistributedContext::~DistributedContext() { Finish().IgnoreError(); }

int DistributedContext::rank() const { return impl_->rank; }
int DistributedContext::size() const { return impl_->size; }
int DistributedContext::local_rank() const { return impl_->local_rank; }
int DistributedContext::local_size() const { return impl_->local_size; }
const std::string& DistributedContext::device() const { return impl_->device; }
Communicator& DistributedContext::communicator() { return *impl_->comm; }
Store& DistributedContext::store() { return *impl_->store; }
const std::string& DistributedContext::run_id() const { return impl_->run_id; }
int64_t DistributedContext::generation() const { return impl_->generation; }
const std::optional<Recipe>& DistributedContext::recipe() const { return impl_->recipe; }

absl::Status DistributedContext::Finish(const absl::Status& status) {
  if (impl_->finished) return absl::OkStatus();
  impl_->finished = true;
  if (impl_->group == nullptr) return absl::OkStatus();
  // Rounds before leaving: the coordinator finishes the run once every member has left.
  absl::Status flushed = impl_->reports == nullptr
                             ? absl::OkStatus()
                             : impl_->reports->Flush(absl::Now() + kReportFlushTimeout);
  if (!flushed.ok()) {
    flushed = absl::Status(
        flushed.code(), absl::StrCat("reporting rounds to the coordinator: ", flushed.message()));
  }
  std::string error;
  if (!status.ok()) {
    error = status.ToString();
  } else if (!flushed.ok()) {
    error = flushed.ToString();  // the run's rounds.jsonl would lack rounds: fail it visibly
  }
  absl::Status left = impl_->group->Leave(error);
  return left.ok() ? flushed : left;
}

bool DistributedContext::reports_rounds() const { return impl_->reports != nullptr; }

void DistributedContext::ReportRound(const RoundResult& result) {
  if (impl_->reports == nullptr || impl_->finished) return;
  v1::RoundReport report;
  report.set_round(impl_->next_round++);
  report.set_start_step(result.round.start_step);
  report.set_h(result.round.h);
  report.set_lr(result.round.lr);
  if (!std::isnan(result.train_loss)) report.set_train_loss(result.train_loss);
  report.set_seconds(result.seconds);
  report.set_bytes_sent(result.bytes_sent);
  report.set_params_digest(result.params_digest);
  impl_->reports->AddRound(std::move(report));
  impl_->group->SetStep(result.round.end_step());
}

absl::StatusOr<StaticWorld> StaticWorldFromEnvironment() {
  StaticWorld world;
  absl::StatusOr<int> size = IntFromEnvironment("WORLD_SIZE", 1, 1 << 20);
  if (!size.ok()) return size.status();
  absl::StatusOr<int> rank = IntFromEnvironment("RANK", 0, *size - 1);
  if (!rank.ok()) return rank.status();
  world.world_size = *size;
  world.rank = *rank;
  const char* addr = std::getenv("MASTER_ADDR");
  if (world.world_size > 1 || (addr != nullptr && *addr != '\0')) {
    if (addr == nullptr || *addr == '\0') {
      return absl::InvalidArgumentError(
          "environment variable MASTER_ADDR is not set; it names the host of rank 0");
    }
    world.master_addr = addr;
    absl::StatusOr<int> port = IntFromEnvironment("MASTER_PORT", 1, 65535);
    if (!port.ok()) return port.status();
    world.master_port = *port;
  }
  absl::StatusOr<int> local_size = OptionalIntFromEnvironment("LOCAL_WORLD_SIZE", 1, 1 << 20, -1);
  if (!local_size.ok()) return local_size.status();
  absl::StatusOr<int> local_rank = OptionalIntFromEnvironment(
      "LOCAL_RANK", 0, *local_size > 0 ? *local_size - 1 : (1 << 20), -1);
  if (!local_rank.ok()) {
    if (*local_size > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(local_rank.status().message(), " (LOCAL_WORLD_SIZE=", *local_size, ")"));
    }
    return local_rank.status();
  }
  world.local_rank = *local_rank;
  world.local_world_size = *local_size;
  // torch.distributed compares the value with str(True).
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  world.use_agent_store = agent != nullptr && std::string(agent) == "True";
  absl::StatusOr<int> restarts =
      OptionalIntFromEnvironment("TORCHELASTIC_RESTART_COUNT", 0, 1 << 30, 0);
  if (!restarts.ok()) return restarts.status();
  world.restart_count = *restarts;
  if (world.use_agent_store && world.master_addr.empty()) {
    return absl::InvalidArgumentError(
        "TORCHELASTIC_USE_AGENT_STORE=True but MASTER_ADDR is not set; the agent's store is "
        "reached at MASTER_ADDR:MASTER_PORT");
  }
  return world;
}

absl::StatusOr<std::unique_ptr<DistributedContext>> InitStaticWorld(
    const StaticWorld& world, const DistributedOptions& options) {
  if (world.world_size < 1 || world.rank < 0 || world.rank >= world.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "static world: rank ", world.rank, " is not in [0, world size ", world.world_size, ")"));
  }
  if (world.world_size > 1 &&
      (world.master_addr.empty() || world.master_port < 1 || world.master_port > 65535)) {
    return absl::InvalidArgumentError(
        absl::StrCat("static world: a master address and a port in [1, 65535] are needed, got \"",
                     world.master_addr, "\" and ", world.master_port));
  }
  const absl::Duration timeout =
      options.timeout > absl::ZeroDuration() ? options.timeout : kDefaultStaticTimeout;
  if (world.use_agent_store &&
      (world.master_addr.empty() || world.master_port < 1 || world.master_port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "static world: torchrun's agent store needs its address and a port in [1, 65535], got \"",
        world.master_addr, "\" and ", world.master_port));
  }
  auto impl = std::make_unique<DistributedContext::Impl>();
  impl->rank = world.rank;
  impl->size = world.world_size;
  impl->local_rank = world.local_rank;
  impl->local_size = world.local_world_size;
  impl->device = DeviceFor(options.device, world.local_rank);
  if (world.use_agent_store) {
    // torchrun's agent serves the store on MASTER_ADDR:MASTER_PORT, even for a world of one.
    absl::StatusOr<std::unique_ptr<C10dStore>> store =
        C10dStore::Connect(world.master_addr, world.master_port, absl::Now() + timeout, timeout);
    if (!store.ok()) return store.status();
    impl->agent_store = std::move(*store);
    // torch.distributed's key space under the agent's store: one per restart attempt.
    impl->store = std::make_unique<PrefixStore>(
        absl::StrCat("/worker/attempt_", world.restart_count), impl->agent_store.get());
  } else if (world.world_size == 1) {
    impl->store = std::make_unique<InMemoryStore>();  // Nobody to meet: no port to bind.
  } else if (world.rank == 0) {
    absl::StatusOr<std::unique_ptr<C10dStore>> store =
        C10dStore::Serve(world.master_addr, world.master_port, timeout);
    if (!store.ok()) return store.status();
    impl->store = std::move(*store);
  } else {
    absl::StatusOr<std::unique_ptr<C10dStore>> store =
        C10dStore::Connect(world.master_addr, world.master_port, absl::Now() + timeout, timeout);
    if (!store.ok()) return store.status();
    impl->store = std::move(*store);
  }
  // One store serves one job (one attempt of it), so a fixed prefix suffices; "c0" leaves room
  // for more communicators under other prefixes.
  impl->scoped = std::make_unique<PrefixStore>("qsr/c0", impl->store.get());
  if (absl::Status s = Connect(*impl, options, world.master_addr, timeout); !s.ok()) return s;
  return std::make_unique<DistributedContext>(std::move(impl));
}

absl::StatusOr<std::unique_ptr<DistributedContext>> InitFromEnvironment(
    const DistributedOptions& options) {
  absl::StatusOr<StaticWorld> world = StaticWorldFromEnvironment();
  if (!world.ok()) return world.status();
  return InitStaticWorld(*world, options);
}

absl::StatusOr<std::unique_ptr<DistributedContext>> InitWithCoordinator(
    const std::string& address, const DistributedOptions& options) {
  if (address.empty()) return absl::InvalidArgumentError("coordinator address is empty");
  auto impl = std::make_unique<DistributedContext::Impl>();
  GroupMember member;
  member.worker_id = options.worker_id.empty()
                         ? absl::StrCat(HostName(), ":", static_cast<int64_t>(::getpid()))
                         : options.worker_id;
  member.host = TransportHost(options, HostOf(address));
  member.device = options.device;
  member.self_planned = true;  // LocalOptimizer decides the rounds and reports them
  impl->device = options.device;
  ClientSecurity security;
  security.tls_ca = options.tls_ca;
  security.tls_cert = options.tls_cert;
  security.tls_key = options.tls_key;
  absl::StatusOr<std::string> token = LoadToken(options.token_file);
  if (!token.ok()) return token.status();
  security.token = *std::move(token);
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client =
      NewGrpcCoordinatorClient(address, security);
  if (!client.ok()) return client.status();
  impl->client = *std::move(client);
  impl->group = std::make_unique<JoinedGroup>(impl->client.get(), member);
  if (absl::Status s = impl->group->Join(
          options.timeout > absl::ZeroDuration() ? options.timeout : kDefaultJoinTimeout);
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("coordinator at ", address, ": ", s.message()));
  }
  const v1::JoinReply& joined = impl->group->join();
  impl->rank = joined.rank();
  impl->size = joined.world_size();
  impl->run_id = joined.run_id();
  impl->generation = joined.generation();
  impl->next_round = joined.start_round();
  impl->reports = std::make_unique<ReportSender>(impl->client.get(), impl->group->ReportIdentity());
  // Informational: an unreadable recipe (a newer coordinator) does not stop training.
  if (absl::StatusOr<Recipe> recipe = ParseRecipeYaml(joined.recipe_yaml(), "coordinator recipe");
      recipe.ok() && ResolveRecipe(*recipe).ok()) {
    impl->recipe = *recipe;
  }
  impl->store = std::make_unique<CoordinatorStore>(impl->client.get());
  impl->scoped = impl->group->RendezvousStore();
  absl::Duration timeout = options.timeout;
  if (timeout <= absl::ZeroDuration()) timeout = absl::Milliseconds(joined.rendezvous_timeout_ms());
  if (timeout <= absl::ZeroDuration()) timeout = kDefaultStaticTimeout;
  const absl::Status connected = Connect(*impl, options, HostOf(address), timeout);
  // The coordinator declares silent members failed. A library process does not re-form its
  // group by itself: when the coordinator ends the generation, the communicator is aborted so
  // that the program's next collective fails instead of waiting on a dead peer.
  if (connected.ok()) impl->group->Watch(impl->comm.get());
  auto context = std::make_unique<DistributedContext>(std::move(impl));
  if (!connected.ok()) {
    // Leave with the error, so that the coordinator fails the run at once instead of waiting.
    context->Finish(connected).IgnoreError();
    return connected;
  }
  return context;
}

}  // namespace qsr
