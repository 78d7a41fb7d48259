// Runs examples/local_sgd as real processes: two ranks of a torchrun-style static world on an
// OS-chosen port, and two workers joining an in-process coordinator. Both ranks must exit 0,
// average several rounds, and print the same final parameter hash.
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/recipe.h"
#include "common/tcp_store.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace qsr {
namespace {

constexpr int kTimeoutS = 120;

struct RankOutput {
  int exit_code = -1;
  std::string output;
  int64_t rounds = -1;
  std::string hash;
};

// Runs `argv_of(rank)` for ranks 0 and 1 at once, each bounded by kTimeoutS.
std::vector<RankOutput> RunTwoRanks(const std::function<std::vector<std::string>(int)>& argv_of) {
  std::vector<RankOutput> out(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      testing::CommandResult result = testing::RunCommand(argv_of(r), kTimeoutS);
      out[r].exit_code = result.exit_code;
      out[r].output = result.output;
      // "rank R of 2: N steps, M rounds, final params hash H"
      std::smatch m;
      static const std::regex kFinal(
          R"(rank \d+ of 2: \d+ steps, (\d+) rounds, final params hash ([0-9a-f]{16}))");
      if (std::regex_search(result.output, m, kFinal)) {
        out[r].rounds = std::stoll(m[1]);
        out[r].hash = m[2];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

void ExpectIdenticalRanks(const std::vector<RankOutput>& out) {
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(out[r].exit_code, 0) << "rank " << r << " output:\n" << out[r].output;
    EXPECT_FALSE(out[r].hash.empty()) << "rank " << r << " output:\n" << out[r].output;
    EXPECT_GE(out[r].rounds, 5) << "rank " << r;
  }
  EXPECT_EQ(out[0].hash, out[1].hash);
  EXPECT_EQ(out[0].rounds, out[1].rounds);
}

// A port that was free a moment ago.
int FreePort() {
  absl::StatusOr<std::unique_ptr<TcpStore>> probe = TcpStore::Serve("127.0.0.1", 0);
  return probe.ok() ? (*probe)->port() : 0;
}

TEST(LocalSgdExampleTest, TwoRanksFromEnvironmentVariables) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  std::vector<RankOutput> out = RunTwoRanks([&](int r) {
    return std::vector<std::string>{
        "env",          "MASTER_ADDR=127.0.0.1",  absl::StrCat("MASTER_PORT=", port),
        "WORLD_SIZE=2", absl::StrCat("RANK=", r), QSR_LOCAL_SGD_BIN,
        "--steps=160"};
  });
  ExpectIdenticalRanks(out);
  // Rank 0 prints each round; H grows as the LR decays.
  EXPECT_NE(out[0].output.find("round   0: steps [   0,    2) H=  2"), std::string::npos)
      << out[0].output;
}

TEST(LocalSgdExampleTest, TwoWorkersJoiningACoordinator) {
  Recipe recipe;
  recipe.model = "mlp";
  recipe.workers = 2;
  recipe.steps_per_epoch = 10;
  recipe.epochs = 1;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  CoordinatorServer::Options options;
  options.run.run_id = "example";
  options.run.rendezvous_timeout = absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, options);
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<RankOutput> out = RunTwoRanks([&](int) {
    return std::vector<std::string>{QSR_LOCAL_SGD_BIN, "--steps=100",
                                    "--coordinator=" + (*server)->address()};
  });
  ExpectIdenticalRanks(out);
  EXPECT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(10)));
}

TEST(LocalSgdExampleTest, ABadEnvironmentIsReportedNamingTheVariable) {
  testing::CommandResult result =
      testing::RunCommand({"env", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29500", "WORLD_SIZE=2",
                           "RANK=5", QSR_LOCAL_SGD_BIN},
                          30);
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("RANK=5"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace qsr
