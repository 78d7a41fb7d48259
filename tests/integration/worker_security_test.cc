// Real qsr-worker processes behind the closed door: a run over mutual TLS with the run token,
// against an in-process coordinator on an OS-chosen loopback port, while workers without the
// token or with a certificate from another CA try to join. Certificates are made at test time
// with the openssl CLI; the workers train `mlp` on Fashion-MNIST.
#include "absl/strings/str_cat.h"
#include "cli/process_group.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/coordinator/test_security.h"
#include "tests/integration/test_pki.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

using testing::Pki;
using testing::WriteFile;

const std::string kToken = "tok-5b2e9d41c7a08f36";

// qsr-worker processes train a run over mutual TLS with the token; a worker without the token
// and one whose certificate another CA signed are refused (and exit with the reason), and the
// run goes on to its end without them.
TEST(RealWorkersTest, TrainOverMutualTlsWithTheTokenAndIntrudersAreRefused) {
  Pki pki;
  ASSERT_TRUE(pki.ok());
  Recipe recipe;
  recipe.model = "mlp";
  recipe.optimizer = "localsgd";
  recipe.workers = 2;
  recipe.total_batch_size = 64;
  recipe.steps_per_epoch = 12;
  recipe.epochs = 1;
  recipe.max_lr = 0.05;
  recipe.warmup_steps = 2;
  recipe.alpha = 0.02;
  recipe.min_h = 2;
  recipe.init_h = 2;
  recipe.seed = 3;
  recipe.init_model_by_seed = 5;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  CoordinatorServer::Options options;
  options.run.run_id = "door-workers";
  options.run.rendezvous_timeout = absl::Seconds(30);
  options.security = Server(pki.Pem("server"), pki.Key("server"), pki.Pem("ca"), kToken);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string token_file = pki.dir() + "/run.token";
  const std::string wrong_token_file = pki.dir() + "/wrong.token";
  WriteFile(token_file, kToken + "\n");
  WriteFile(wrong_token_file, "tok-wrong\n");

  ProcessGroup workers;
  auto spawn = [&](const std::string& id, const std::string& cert,
                   const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {QSR_WORKER_BIN,
                                     "--coordinator",
                                     (*server)->address(),
                                     "--threads",
                                     "1",
                                     "--worker-id",
                                     id,
                                     "--tls-ca",
                                     pki.Pem("ca"),
                                     "--tls-cert",
                                     pki.Pem(cert),
                                     "--tls-key",
                                     pki.Key(cert),
                                     "--connect-timeout",
                                     "8s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    absl::StatusOr<int> i = workers.Spawn(id, argv);
    EXPECT_TRUE(i.ok()) << i.status();
  };
  spawn("no-token", "client", {});                                     // 0
  spawn("wrong-token", "client", {"--token-file", wrong_token_file});  // 1
  spawn("rogue", "rogue", {"--token-file", token_file});               // 2
  spawn("w0", "client", {"--token-file", token_file});                 // 3
  spawn("w1", "client", {"--token-file", token_file});                 // 4
  const absl::Time deadline = absl::Now() + absl::Seconds(150);
  while (!workers.AllExited() && absl::Now() < deadline) workers.Pump(absl::Milliseconds(50));
  ASSERT_TRUE(workers.AllExited()) << "workers did not finish within the deadline";
  for (int i = 0; i < 3; ++i) EXPECT_NE(workers.ExitCode(i), 0) << workers.Name(i);
  EXPECT_EQ(workers.ExitCode(3), 0);
  EXPECT_EQ(workers.ExitCode(4), 0);
  ASSERT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(10)));
  v1::GetStatusReply status = (*server)->controller().Status(absl::Now());
  EXPECT_EQ(status.state(), "FINISHED") << status.message();
  EXPECT_EQ(status.world_size(), 2);
  EXPECT_EQ(status.generation(), 1) << "an intruder changed the group";
  for (const v1::WorkerInfo& w : status.worker_info()) {
    EXPECT_TRUE(w.worker_id() == "w0" || w.worker_id() == "w1") << w.worker_id();
  }
  const std::vector<Round> plan = RoundPlanner(recipe).Plan();
  v1::ListRoundsReply rounds = (*server)->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), static_cast<int>(plan.size()));
  int checked = 0;
  for (const v1::RoundRecord& r : rounds.rounds()) {
    EXPECT_EQ(r.workers(), 2) << "round " << r.round();
    EXPECT_TRUE(r.identical()) << "round " << r.round();
    checked += r.digest_checked() ? 1 : 0;
  }
  EXPECT_EQ(checked, static_cast<int>(plan.size()));
}

}  // namespace
}  // namespace qsr
