// The closed door: TLS, mutual TLS, the run token and request bounds, against real
// coordinators on OS-chosen loopback ports — in-process CoordinatorServers driven by FakeWorkers
// and raw clients, and the qsr-coordinator / qsrctl binaries with their flags. Certificates are
// made at test time with the openssl CLI.
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/process_group.h"
#include "client/connection_security.h"
#include "client/coordinator_client.h"
#include "client/ops_client.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_security.h"
#include "tests/integration/fake_workers.h"
#include "tests/integration/test_pki.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

using testing::CommandResult;
using testing::FakeWorkers;
using testing::Pki;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;
using testing::WriteFile;

const std::string kBin = QSR_BIN_DIR;
const std::string kRecipe =
    std::string(QSR_SOURCE_DIR) + "/recipes/fashion-mnist/cnn-localsgd-qsr.yaml";
const std::string kToken = "tok-3f9a1c07e2b84d6a";

Recipe SmallRecipe(int workers, int epochs) {
  absl::StatusOr<Recipe> recipe = LoadRecipeFile(kRecipe);
  EXPECT_TRUE(recipe.ok()) << recipe.status();
  recipe->workers = workers;
  recipe->epochs = epochs;
  recipe->steps_per_epoch = 20;
  absl::Status s = ResolveRecipe(*recipe);
  EXPECT_TRUE(s.ok()) << s;
  return *recipe;
}

std::unique_ptr<CoordinatorServer> StartServer(ServerSecurity security, int workers = 2,
                                               int epochs = 2) {
  CoordinatorServer::Options options;
  options.run.run_id = "door";
  options.security = std::move(security);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(SmallRecipe(workers, epochs), options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

std::unique_ptr<OpsClient> Ops(const std::string& address, const ClientSecurity& security) {
  absl::StatusOr<std::unique_ptr<OpsClient>> client = OpsClient::Create(address, security);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

std::unique_ptr<CoordinatorClient> Worker(const std::string& address,
                                          const ClientSecurity& security) {
  absl::StatusOr<std::unique_ptr<CoordinatorClient>> client =
      NewGrpcCoordinatorClient(address, security);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

ClientSecurity TokenOnly(std::string token) { return Client("", "", "", std::move(token)); }

constexpr absl::Duration kCall = absl::Seconds(10);

// --- TLS -----------------------------------------------------------------------------------

TEST(TlsTest, TlsCoordinatorServesTlsClientsOnly) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  auto server = StartServer(Server(pki.Pem("server"), pki.Key("server")));
  ASSERT_NE(server, nullptr);

  auto tls = Ops(server->address(), Client(pki.Pem("ca")));
  absl::StatusOr<v1::GetStatusReply> status = tls->GetStatus(kCall);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), "WAITING");

  // A plain client cannot talk to it, nor one that trusts another CA.
  OpsClient plain(server->address());
  EXPECT_FALSE(plain.GetStatus(absl::Seconds(3)).ok());
  auto wrong_ca = Ops(server->address(), Client(pki.Pem("rogue-ca")));
  EXPECT_FALSE(wrong_ca->GetStatus(absl::Seconds(3)).ok());
}

TEST(TlsTest, MutualTlsRefusesClientsWithoutACertificateTheCaSigned) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  auto server = StartServer(Server(pki.Pem("server"), pki.Key("server"), pki.Pem("ca"), kToken));
  ASSERT_NE(server, nullptr);

  auto no_cert = Ops(server->address(), Client(pki.Pem("ca")));
  EXPECT_FALSE(no_cert->GetStatus(absl::Seconds(3)).ok());
  auto rogue = Ops(server->address(), Client(pki.Pem("ca"), pki.Pem("rogue"), pki.Key("rogue")));
  EXPECT_FALSE(rogue->GetStatus(absl::Seconds(3)).ok());

  // Workers with the CA-signed certificate and the token train the whole run over mutual TLS.
  const ClientSecurity good = Client(pki.Pem("ca"), pki.Pem("client"), pki.Key("client"), kToken);
  auto ops = Ops(server->address(), good);
  ASSERT_TRUE(ops->GetStatus(kCall).ok());
  FakeWorkers::Options options;
  options.security = good;
  FakeWorkers workers(server->address(), options);
  ASSERT_TRUE(workers.Wait().ok()) << workers.Wait();
  ASSERT_TRUE(server->AwaitDone(absl::Now() + absl::Seconds(30)));
  absl::StatusOr<v1::GetStatusReply> status = ops->GetStatus(kCall);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), "FINISHED");
  EXPECT_EQ(status->step(), status->total_steps());
}

// --- The token -----------------------------------------------------------------------------

TEST(TokenTest, JoinWithoutTheTokenIsRefusedAndTheRunGoesOn) {
  auto server = StartServer(Server("", "", "", kToken));
  ASSERT_NE(server, nullptr);
  v1::JoinRequest join;
  join.set_worker_id("intruder");
  for (const std::string& token : {std::string(), std::string("tok-wrong"), kToken + "x"}) {
    auto client = Worker(server->address(), TokenOnly(token));
    absl::StatusOr<v1::JoinReply> reply = client->Join(join, absl::Now() + kCall);
    ASSERT_FALSE(reply.ok()) << "token \"" << token << "\"";
    EXPECT_TRUE(absl::IsUnauthenticated(reply.status())) << reply.status();
    EXPECT_TRUE(absl::StrContains(reply.status().message(), "token")) << reply.status();
    EXPECT_FALSE(absl::StrContains(reply.status().message(), kToken)) << reply.status();
    if (!token.empty()) {
      EXPECT_FALSE(absl::StrContains(reply.status().message(), token)) << reply.status();
    }
    // The other mutating calls are closed too.
    v1::KvSetRequest set;
    set.set_key("k");
    EXPECT_TRUE(absl::IsUnauthenticated(client->KvSet(set, absl::Now() + kCall).status()));
  }
  auto anonymous = Ops(server->address(), ClientSecurity());
  absl::StatusOr<v1::StopReply> stop = anonymous->Stop(v1::StopRequest(), kCall);
  EXPECT_TRUE(absl::IsUnauthenticated(stop.status())) << stop.status();

  // No intruder got in, and the workers with the token train the run to its end.
  FakeWorkers::Options options;
  options.security.token = kToken;
  FakeWorkers workers(server->address(), options);
  ASSERT_TRUE(workers.Wait().ok()) << workers.Wait();
  ASSERT_TRUE(server->AwaitDone(absl::Now() + absl::Seconds(30)));
  v1::GetStatusReply status = server->controller().Status(absl::Now());
  EXPECT_EQ(status.state(), "FINISHED");
  EXPECT_EQ(status.failures(), 0);
  for (const v1::WorkerInfo& w : status.worker_info()) EXPECT_NE(w.worker_id(), "intruder");
}

TEST(TokenTest, StatusReadsAreOpenUnlessProtected) {
  for (bool protect : {false, true}) {
    SCOPED_TRACE(protect ? "--token-protect-reads" : "open reads");
    auto server = StartServer(Server("", "", "", kToken, protect));
    ASSERT_NE(server, nullptr);
    auto anonymous = Ops(server->address(), ClientSecurity());
    auto holder = Ops(server->address(), TokenOnly(kToken));
    absl::StatusOr<v1::GetStatusReply> status = anonymous->GetStatus(kCall);
    absl::StatusOr<v1::ListRoundsReply> rounds = anonymous->ListRounds({}, kCall);
    absl::StatusOr<v1::ListEvalsReply> evals = anonymous->ListEvals(kCall);
    if (protect) {
      EXPECT_TRUE(absl::IsUnauthenticated(status.status())) << status.status();
      EXPECT_TRUE(absl::IsUnauthenticated(rounds.status())) << rounds.status();
      EXPECT_TRUE(absl::IsUnauthenticated(evals.status())) << evals.status();
      // qsrctl's words for it.
      EXPECT_TRUE(absl::StrContains(status.status().message(), "wrong or missing token"));
    } else {
      EXPECT_TRUE(status.ok()) << status.status();
      EXPECT_TRUE(rounds.ok()) << rounds.status();
      EXPECT_TRUE(evals.ok()) << evals.status();
    }
    EXPECT_TRUE(holder->GetStatus(kCall).ok());
    // Stopping needs the token either way.
    EXPECT_TRUE(absl::IsUnauthenticated(anonymous->Stop({}, kCall).status()));
    absl::StatusOr<v1::StopReply> stop = holder->Stop({}, kCall);
    ASSERT_TRUE(stop.ok()) << stop.status();
    EXPECT_EQ(stop->outcome().code(), v1::Outcome::OK);
  }
}

// --- Bounds --------------------------------------------------------------------------------

TEST(BoundsTest, BadRequestsAreRejectedAndTheRunGoesOn) {
  auto server = StartServer(ServerSecurity(), /*workers=*/2, /*epochs=*/5);
  ASSERT_NE(server, nullptr);
  auto client = Worker(server->address(), ClientSecurity());
  auto ops = Ops(server->address(), ClientSecurity());
  const absl::Time deadline = absl::Now() + kCall;

  v1::KvSetRequest set;
  set.set_key(std::string(600, 'k'));
  absl::Status s = client->KvSet(set, deadline).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "key")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "512")) << s;

  set.set_key("run/g1/value");
  set.set_value(std::string((4 << 20) + 1, 'v'));
  s = client->KvSet(set, deadline).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "value")) << s;
  // Past the server's message limit, gRPC itself refuses it.
  set.set_value(std::string(16 << 20, 'v'));
  EXPECT_TRUE(absl::IsResourceExhausted(client->KvSet(set, deadline).status()));

  v1::KvGetRequest get;
  get.add_keys("a");
  get.set_timeout_ms(-1);
  s = client->KvGet(get, deadline).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "timeout_ms")) << s;

  v1::ListRoundsRequest list;
  list.set_limit(-5);
  s = ops->ListRounds(list, kCall).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "limit")) << s;

  v1::StopRequest stop;
  stop.set_reason(std::string(5000, 'r'));
  s = ops->Stop(stop, kCall).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "reason")) << s;

  v1::JoinRequest join;
  join.set_worker_id(std::string(300, 'w'));
  s = client->Join(join, deadline).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "worker_id")) << s;

  // The workers run; a request with the wrong generation for one of them is refused without
  // disturbing it.
  FakeWorkers::Options options;
  options.pace = absl::Milliseconds(50);
  FakeWorkers workers(server->address(), options);
  std::string member;
  int rank = -1;
  const absl::Time joined_by = absl::Now() + absl::Seconds(30);
  while (member.empty() && absl::Now() < joined_by) {
    v1::GetStatusReply status = server->controller().Status(absl::Now());
    // A member of the formed generation (a worker still JOINING has no rank yet).
    if (status.worker_info_size() > 0 && status.worker_info(0).state() == "ACTIVE") {
      member = status.worker_info(0).worker_id();
      rank = status.worker_info(0).rank();
    } else {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  ASSERT_FALSE(member.empty()) << "no worker joined";
  v1::NextRoundsRequest stale;
  stale.set_worker_id(member);
  stale.set_rank(rank);
  stale.set_generation(7);
  stale.set_next_round(0);
  s = client->NextRounds(stale, absl::Now() + kCall).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "generation")) << s;

  ASSERT_TRUE(workers.Wait().ok()) << workers.Wait();
  ASSERT_TRUE(server->AwaitDone(absl::Now() + absl::Seconds(30)));
  v1::GetStatusReply status = server->controller().Status(absl::Now());
  EXPECT_EQ(status.state(), "FINISHED");
  EXPECT_EQ(status.failures(), 0);
  EXPECT_FALSE(status.stop_requested());
  EXPECT_EQ(status.step(), status.total_steps());
}

// --- The binaries' flags -------------------------------------------------------------------

// qsr-coordinator with its output in a file, the port it bound, and its exit.
class CoordinatorProcess {
 public:
  CoordinatorProcess(const std::string& dir, const std::vector<std::string>& extra,
                     const std::string& listen = "127.0.0.1:0")
      : log_(dir + "/coordinator.log") {
    const std::string port_file = dir + "/port";
    std::vector<std::string> argv = {kBin + "/qsr-coordinator",
                                     "--recipe",
                                     kRecipe,
                                     "--listen",
                                     listen,
                                     "--port-file",
                                     port_file,
                                     "--run-dir",
                                     dir + "/run",
                                     "--workers",
                                     "2",
                                     "--steps-per-epoch",
                                     "20",
                                     "--epochs",
                                     "1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string cmd = "exec";
    for (const std::string& a : argv) cmd += " '" + a + "'";
    EXPECT_TRUE(group_.Spawn("coord", {"/bin/sh", "-c", cmd + " >" + log_ + " 2>&1"}).ok());
    std::string port;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (port.empty() && absl::Now() < deadline && !group_.ExitCode(0)) {
      group_.Pump(absl::Milliseconds(50));
      port = ReadFile(port_file);
    }
    EXPECT_FALSE(port.empty()) << "the coordinator did not write its port:\n" << ReadFile(log_);
    port.erase(port.find_last_not_of("\n") + 1);
    port_ = port;
  }
  std::string address(const std::string& host = "127.0.0.1") const { return host + ":" + port_; }
  std::string log() const { return ReadFile(log_); }
  std::optional<int> AwaitExit(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!group_.ExitCode(0) && absl::Now() < deadline) group_.Pump(absl::Milliseconds(50));
    return group_.ExitCode(0);
  }

 private:
  std::string log_;
  std::string port_;
  ProcessGroup group_;
};

TEST(SecurityFlagsTest, CoordinatorAndQsrctlSpeakMutualTlsWithTheToken) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  TempDir dir;
  const std::string token_file = dir.path() + "/token";
  WriteFile(token_file, kToken + "\n");
  CoordinatorProcess coord(dir.path(), {"--tls-cert", pki.Pem("server"), "--tls-key",
                                        pki.Key("server"), "--tls-client-ca", pki.Pem("ca"),
                                        "--token-file", token_file, "--token-protect-reads"});
  const std::vector<std::string> tls = {"--tls-ca",        pki.Pem("ca"), "--tls-cert",
                                        pki.Pem("client"), "--tls-key",   pki.Key("client")};
  auto qsrctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {kBin + "/qsrctl", "--coordinator", coord.address()});
    return RunCommand(args, 60);
  };
  std::vector<std::string> status = {"status", "--json", "--token-file", token_file};
  status.insert(status.end(), tls.begin(), tls.end());
  CommandResult ok = qsrctl(status);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_TRUE(absl::StrContains(ok.output, "WAITING")) << ok.output;

  std::vector<std::string> no_token = {"status"};
  no_token.insert(no_token.end(), tls.begin(), tls.end());
  CommandResult refused = qsrctl(no_token);
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_TRUE(absl::StrContains(refused.output, "token")) << refused.output;

  CommandResult plain = qsrctl({"status", "--token-file", token_file});
  EXPECT_NE(plain.exit_code, 0) << plain.output;

  CommandResult missing_ca = qsrctl({"status", "--tls-ca", dir.path() + "/nope.pem"});
  EXPECT_EQ(missing_ca.exit_code, 2) << missing_ca.output;
  EXPECT_TRUE(absl::StrContains(missing_ca.output, "--tls-ca " + dir.path() + "/nope.pem"))
      << missing_ca.output;

  std::vector<std::string> stop = {"stop", "--token-file", token_file};
  stop.insert(stop.end(), tls.begin(), tls.end());
  CommandResult stopped = qsrctl(stop);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.output;
  // No worker had joined: the run ends at once and the coordinator exits.
  EXPECT_EQ(coord.AwaitExit(absl::Seconds(30)), 0) << coord.log();
  const std::string log = coord.log();
  EXPECT_TRUE(absl::StrContains(log, "mutual TLS")) << log;
  EXPECT_FALSE(absl::StrContains(log, kToken)) << log;
  for (const CommandResult* r : {&ok, &refused, &plain, &stopped}) {
    EXPECT_FALSE(absl::StrContains(r->output, kToken)) << r->output;
  }
}

TEST(SecurityFlagsTest, NonLoopbackWithoutTlsWarnsAndBadFilesAreNamed) {
  TempDir dir;
  {
    CoordinatorProcess coord(dir.path(), {}, "0.0.0.0:0");
    // The warning is logged before the port file is written.
    EXPECT_TRUE(absl::StrContains(coord.log(), "without TLS")) << coord.log();
    EXPECT_TRUE(absl::StrContains(coord.log(), "without a token")) << coord.log();
    OpsClient ops(coord.address());
    EXPECT_TRUE(ops.Stop({}, kCall).ok());
    EXPECT_EQ(coord.AwaitExit(absl::Seconds(30)), 0) << coord.log();
  }
  {
    TempDir loopback;
    CoordinatorProcess coord(loopback.path(), {});
    EXPECT_FALSE(absl::StrContains(coord.log(), "without TLS")) << coord.log();
    OpsClient ops(coord.address());
    EXPECT_TRUE(ops.Stop({}, kCall).ok());
    EXPECT_EQ(coord.AwaitExit(absl::Seconds(30)), 0) << coord.log();
  }
  const std::string missing = dir.path() + "/missing.pem";
  CommandResult r = RunCommand({kBin + "/qsr-coordinator", "--recipe", kRecipe, "--listen",
                                "127.0.0.1:0", "--tls-cert", missing, "--tls-key", missing},
                               30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--tls-cert " + missing + ": cannot open")) << r.output;

  // qsr-run checks the files it passes on before it starts anything.
  r = RunCommand({kBin + "/qsr-run", "--recipe", kRecipe, "--run-dir", dir.path() + "/qsr-run",
                  "--tls-cert", missing, "--tls-key", missing, "--tls-ca", missing},
                 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--tls-ca " + missing + ": cannot open")) << r.output;

  WriteFile(dir.path() + "/empty-token", "\n");
  r = RunCommand({kBin + "/qsr-coordinator", "--recipe", kRecipe, "--listen", "127.0.0.1:0",
                  "--token-file", dir.path() + "/empty-token"},
                 30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "token is empty")) << r.output;
}

}  // namespace
}  // namespace qsr
