// Runs examples/local_sgd as real processes: two ranks of a static world on an OS-chosen port
// (rank 0 serving the store, as torch.distributed's env://), two ranks under torchrun's agent
// store (served by a separate Python process, as torchrun's agent serves it, through two restart
// attempts), and two workers joining an in-process coordinator. Both ranks must exit 0, average
// several rounds, and print the same final parameter hash.
#include <cstdio>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/recipe.h"
#include "coordinator/coordinator_server.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"
#include "worker/comm/c10d_store.h"

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
int FreePort() { return testing::FreeLoopbackPort(); }

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

// A c10d TCPStore served by a separate Python process, as torchrun's elastic agent serves it.
class AgentStore {
 public:
  // Starts the server; keys_to_report are checked when it stops (see Stop()).
  explicit AgentStore(const std::vector<std::string>& keys_to_report) {
    std::string command = absl::StrCat(QSR_PYTHON, " ", QSR_AGENT_STORE_PY, " ", kTimeoutS * 3);
    for (const std::string& key : keys_to_report) absl::StrAppend(&command, " ", key);
    pipe_ = ::popen(command.c_str(), "r");
    if (pipe_ == nullptr) return;
    char line[64] = {};
    // Ends with the port, or at EOF if Python or torch.distributed is missing.
    if (std::fgets(line, sizeof(line), pipe_) != nullptr) port_ = std::atoi(line);
  }
  ~AgentStore() { Stop(); }
  int port() const { return port_; }

  // Sets the stop key through a client, as the agent ends; returns what the server printed after
  // it ("KEY present|missing" lines).
  std::string Stop() {
    if (pipe_ == nullptr) return "";
    if (port_ > 0) {
      absl::StatusOr<std::unique_ptr<C10dStore>> client =
          C10dStore::Connect("127.0.0.1", port_, absl::Now() + absl::Seconds(30));
      EXPECT_TRUE(client.ok()) << client.status();
      if (client.ok()) {
        EXPECT_TRUE((*client)->Set("qsr_test/stop", "1").ok());
      }
    }
    std::string rest;
    char buffer[256];
    while (std::fgets(buffer, sizeof(buffer), pipe_) != nullptr) rest += buffer;
    EXPECT_EQ(::pclose(pipe_), 0) << rest;
    pipe_ = nullptr;
    return rest;
  }

 private:
  FILE* pipe_ = nullptr;
  int port_ = 0;
};

TEST(LocalSgdExampleTest, TwoRanksUnderTorchrunsAgentStore) {
  // Gloo's full-mesh keys of each attempt, under torch.distributed's per-attempt prefix.
  AgentStore agent({"/worker/attempt_0/qsr/c0/0", "/worker/attempt_1/qsr/c0/0", "/qsr/c0/0"});
  ASSERT_GT(agent.port(), 0) << "could not start " << QSR_PYTHON << " " << QSR_AGENT_STORE_PY
                             << " (scripts/install-deps.sh installs python3-torch)";
  // Two attempts, as torchrun runs them after a failure: the second must not read the first's
  // keys, which stay in the agent's store.
  for (int attempt = 0; attempt < 2; ++attempt) {
    SCOPED_TRACE(absl::StrCat("attempt ", attempt));
    std::vector<RankOutput> out = RunTwoRanks([&](int r) {
      return std::vector<std::string>{"env",
                                      "MASTER_ADDR=127.0.0.1",
                                      absl::StrCat("MASTER_PORT=", agent.port()),
                                      "WORLD_SIZE=2",
                                      absl::StrCat("RANK=", r),
                                      absl::StrCat("LOCAL_RANK=", r),
                                      "LOCAL_WORLD_SIZE=2",
                                      "TORCHELASTIC_USE_AGENT_STORE=True",
                                      absl::StrCat("TORCHELASTIC_RESTART_COUNT=", attempt),
                                      QSR_LOCAL_SGD_BIN,
                                      "--steps=100"};
    });
    ExpectIdenticalRanks(out);
    for (int r = 0; r < 2; ++r) {
      EXPECT_NE(out[r].output.find(
                    absl::StrCat("rank ", r, " of 2: local rank ", r, " of 2, device cpu")),
                std::string::npos)
          << out[r].output;
    }
  }
  const std::string keys = agent.Stop();
  EXPECT_NE(keys.find("/worker/attempt_0/qsr/c0/0 present"), std::string::npos) << keys;
  EXPECT_NE(keys.find("/worker/attempt_1/qsr/c0/0 present"), std::string::npos) << keys;
  EXPECT_NE(keys.find("/qsr/c0/0 missing"), std::string::npos) << keys;
}

TEST(LocalSgdExampleTest, TwoWorkersJoiningACoordinator) {
  Recipe recipe;
  recipe.model = "mlp";
  recipe.workers = 2;
  recipe.steps_per_epoch = 100;  // the example's rounds must end within the recipe's steps
  recipe.epochs = 1;
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  testing::TempDir dir;
  CoordinatorServer::Options options;
  options.run.run_id = "example";
  options.run_dir = dir.path() + "/run";
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
  // The rounds the example planned, as the coordinator logged them, ending at step 100.
  EXPECT_EQ((*server)->controller().Status(absl::Now()).state(), "FINISHED");
  EXPECT_EQ((*server)->controller().Status(absl::Now()).step(), 100);
  EXPECT_FALSE(testing::ReadLines(dir.path() + "/run/rounds.jsonl").empty());
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
