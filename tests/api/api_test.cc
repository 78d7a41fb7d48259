// The qsr library: LocalOptimizer against the coordinator's round plan, data-parallel mode, and
// joining a group (static world, environment variables, coordinator). Ranks are threads talking
// over loopback.
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qsr/qsr.h"
#include "tests/integration/test_util.h"
#include "worker/adam_moments.h"

namespace qsr {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// Runs fn(rank) on `size` threads.
void OnRanks(int size, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

// Communicators for `size` ranks in this process, through one in-memory store.
std::vector<std::unique_ptr<Communicator>> MakeGroup(int size) {
  InMemoryStore store;
  std::vector<std::unique_ptr<Communicator>> comms(size);
  OnRanks(size, [&](int r) {
    CommunicatorOptions options;
    options.timeout = absl::Seconds(30);
    absl::StatusOr<std::unique_ptr<Communicator>> c =
        CreateCommunicator(torch::kCPU, &store, r, size, options);
    ASSERT_TRUE(c.ok()) << c.status();
    comms[r] = std::move(*c);
  });
  return comms;
}

// An MLP with BatchNorm, so that floating buffers are averaged too.
torch::nn::Sequential MakeModel(int seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::BatchNorm1d(16),
                               torch::nn::ReLU(), torch::nn::Linear(16, 3));
}

// The model's parameters and (unless `params_only`) floating buffers, flattened.
torch::Tensor State(torch::nn::Module& model, bool params_only = false) {
  std::vector<torch::Tensor> parts;
  for (const torch::Tensor& p : model.parameters()) parts.push_back(p.detach().flatten());
  for (const torch::Tensor& b : model.buffers()) {
    if (b.is_floating_point() && !params_only) parts.push_back(b.detach().flatten());
  }
  return torch::cat(parts).clone();
}

void SetLr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

// One forward and backward pass on a random batch.
void Backward(torch::nn::Sequential& model, torch::optim::Optimizer& opt) {
  torch::Tensor x = torch::randn({16, 8});
  torch::Tensor y = torch::randint(0, 3, {16});
  opt.zero_grad();
  torch::nn::functional::cross_entropy(model->forward(x), y).backward();
}

Recipe QsrRecipe() {
  Recipe r;
  r.model = "mlp";
  r.optimizer = "localsgd";
  r.workers = 2;
  r.total_batch_size = 32;
  r.steps_per_epoch = 20;
  r.epochs = 4;
  r.max_lr = 0.1;
  r.min_lr = 0.0;
  r.warmup_steps = 6;
  r.alpha = 0.03;  // H = floor((0.03 / lr)^2): min_h near the peak, long rounds as the LR decays
  r.min_h = 2;
  r.init_h = 3;
  return r;
}

// The coordinator's plan for a recipe, and a LocalOptimizer fed the recipe's rule and LR
// schedule, must agree round for round: QSR, and post-local SGD (data-parallel first epoch).
class PlanAgreementTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(PlanAgreementTest, AveragesExactlyWhereTheCoordinatorsPlanDoes) {
  Recipe recipe = QsrRecipe();
  recipe.post_local_epoch = GetParam();
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  const std::vector<Round> plan = RoundPlanner(recipe).Plan();
  ASSERT_GE(plan.size(), 5u);
  const LrSchedule schedule(recipe);
  constexpr int kRanks = 2;
  std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(kRanks);
  std::vector<std::vector<Round>> rounds(kRanks);
  std::vector<std::vector<torch::Tensor>> states(kRanks);  // after each averaging
  std::vector<torch::Tensor> initial(kRanks);
  OnRanks(kRanks, [&](int r) {
    torch::nn::Sequential model = MakeModel(/*seed=*/r);  // differ until the broadcast
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    LocalOptimizerOptions options;
    options.rule = SyncRuleParams::FromRecipe(recipe);
    absl::StatusOr<LocalOptimizer> opt = LocalOptimizer::Create(sgd, *model, *comms[r], options);
    ASSERT_TRUE(opt.ok()) << opt.status();
    initial[r] = State(*model);
    torch::manual_seed(100 + r);  // each rank its own data
    for (int64_t t = 0; t < recipe.TotalSteps(); ++t) {
      SetLr(sgd, schedule.At(t));
      Backward(model, sgd);
      absl::StatusOr<bool> averaged = opt->Step();
      ASSERT_TRUE(averaged.ok()) << averaged.status();
      EXPECT_EQ(opt->step(), t + 1);
      if (*averaged) {
        EXPECT_EQ(opt->h(), 0);
        rounds[r].push_back(opt->last_round());
        // Data-parallel rounds keep the parameters identical; BatchNorm statistics drift.
        states[r].push_back(State(*model, /*params_only=*/opt->last_round().data_parallel));
      } else {
        EXPECT_GT(opt->h(), 0);
      }
    }
    EXPECT_EQ(opt->rounds(), static_cast<int64_t>(rounds[r].size()));
  });
  EXPECT_TRUE(torch::equal(initial[0], initial[1])) << "the initial model was not broadcast";
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(rounds[r].size(), plan.size()) << "rank " << r;
    for (size_t i = 0; i < plan.size(); ++i) {
      EXPECT_EQ(rounds[r][i].index, plan[i].index);
      EXPECT_EQ(rounds[r][i].start_step, plan[i].start_step) << "round " << i;
      EXPECT_EQ(rounds[r][i].h, plan[i].h) << "round " << i;
      EXPECT_DOUBLE_EQ(rounds[r][i].lr, plan[i].lr) << "round " << i;
      EXPECT_EQ(rounds[r][i].data_parallel, plan[i].data_parallel) << "round " << i;
    }
  }
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_TRUE(torch::equal(states[0][i], states[1][i])) << "ranks differ after round " << i;
  }
  // Models changed from round to round.
  EXPECT_FALSE(torch::equal(states[0][0], states[0][1]));
  if (recipe.post_local_epoch > 0) {
    EXPECT_TRUE(plan.front().data_parallel);
  }
  EXPECT_FALSE(plan.back().data_parallel);
}

INSTANTIATE_TEST_SUITE_P(QsrAndPostLocal, PlanAgreementTest, ::testing::Values(-1, 1),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return info.param < 0 ? std::string("Qsr")
                                                 : std::string("PostLocalFromEpoch1");
                         });

TEST(LocalOptimizerTest, DataParallelModeKeepsParametersIdenticalEveryStep) {
  constexpr int kRanks = 2;
  std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(kRanks);
  std::vector<std::vector<torch::Tensor>> params(kRanks);
  OnRanks(kRanks, [&](int r) {
    torch::nn::Sequential model = MakeModel(/*seed=*/r);
    torch::optim::AdamW adamw(model->parameters(), torch::optim::AdamWOptions(1e-2));
    LocalOptimizerOptions options;
    options.rule.data_parallel = true;
    options.rule.alpha = 0.5;  // ignored: H = 1 in data-parallel mode
    options.rule.total_steps = 100;
    absl::StatusOr<LocalOptimizer> opt = LocalOptimizer::Create(adamw, *model, *comms[r], options);
    ASSERT_TRUE(opt.ok()) << opt.status();
    torch::manual_seed(200 + r);
    for (int t = 0; t < 6; ++t) {
      Backward(model, adamw);
      absl::StatusOr<bool> averaged = opt->Step();
      ASSERT_TRUE(averaged.ok()) << averaged.status();
      EXPECT_TRUE(*averaged);
      EXPECT_EQ(opt->last_round().h, 1);
      std::vector<torch::Tensor> ps;
      for (const torch::Tensor& p : model->parameters()) ps.push_back(p.detach().flatten());
      params[r].push_back(torch::cat(ps).clone());
    }
    // BatchNorm statistics drift in data-parallel mode until averaged on request.
    ASSERT_TRUE(opt->AverageModel().ok());
  });
  for (size_t t = 0; t < params[0].size(); ++t) {
    EXPECT_TRUE(torch::equal(params[0][t], params[1][t])) << "step " << t;
  }
}

// avg_m / avg_v: a local round of AdamW ends with the moments averaged as well as the model, as
// qsr-worker's avg_m / avg_v recipes average them (the same RoundSync); without them, only the
// model.
TEST(LocalOptimizerTest, AveragesAdamWMomentsWhenAsked) {
  constexpr int kRanks = 2;
  for (bool avg_moments : {false, true}) {
    std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(kRanks);
    std::vector<std::vector<torch::Tensor>> moments(kRanks);
    OnRanks(kRanks, [&](int r) {
      torch::nn::Sequential model = MakeModel(/*seed=*/r);
      torch::optim::AdamW adamw(model->parameters(), torch::optim::AdamWOptions(1e-2));
      LocalOptimizerOptions options;
      options.rule.init_h = 2;
      options.avg_m = avg_moments;
      options.avg_v = avg_moments;
      absl::StatusOr<LocalOptimizer> opt =
          LocalOptimizer::Create(adamw, *model, *comms[r], options);
      ASSERT_TRUE(opt.ok()) << opt.status();
      torch::manual_seed(300 + r);  // each rank its own batches: the moments differ
      for (int t = 0; t < 2; ++t) {
        Backward(model, adamw);
        ASSERT_TRUE(opt->Step().ok());
      }
      EXPECT_EQ(opt->rounds(), 1);
      for (const torch::Tensor& m : AdamMoments(adamw, model->parameters(), true, true)) {
        moments[r].push_back(m.detach().flatten().clone());
      }
    });
    ASSERT_EQ(moments[0].size(), moments[1].size());
    ASSERT_FALSE(moments[0].empty());
    const bool same = torch::equal(torch::cat(moments[0]), torch::cat(moments[1]));
    EXPECT_EQ(same, avg_moments) << "avg_m and avg_v " << (avg_moments ? "on" : "off");
  }
}

TEST(LocalOptimizerTest, DecidesHFromTheLrAtEachRoundsFirstStep) {
  std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(1);
  torch::nn::Sequential model = MakeModel(0);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  LocalOptimizerOptions options;
  options.rule.alpha = 0.2;
  options.rule.power = 2;
  options.rule.min_h = 1;
  options.rule.init_h = 1;
  options.rule.warmup_steps = 10;
  options.rule.total_steps = 100;
  options.start_step = 50;  // resumed past warmup
  absl::StatusOr<LocalOptimizer> opt = LocalOptimizer::Create(sgd, *model, *comms[0], options);
  ASSERT_TRUE(opt.ok()) << opt.status();
  EXPECT_EQ(opt->step(), 50);
  EXPECT_EQ(opt->h(), 0);  // decided by the first Step()

  SetLr(sgd, 0.1);  // H = (0.2 / 0.1)^2 = 4
  Backward(model, sgd);
  ASSERT_FALSE(*opt->Step());
  EXPECT_EQ(opt->h(), 4);
  EXPECT_EQ(opt->current_round().start_step, 50);
  SetLr(sgd, 0.01);  // a mid-round change does not change this round's H
  for (int i = 0; i < 3; ++i) {
    Backward(model, sgd);
    ASSERT_EQ(*opt->Step(), i == 2);
  }
  EXPECT_EQ(opt->last_round().h, 4);
  EXPECT_EQ(opt->last_round().end_step(), 54);
  SetLr(sgd, 0.05);  // next round: (0.2 / 0.05)^2 = 16
  Backward(model, sgd);
  ASSERT_FALSE(*opt->Step());
  EXPECT_EQ(opt->h(), SyncPeriod(options.rule, 54, 0.05));
  EXPECT_EQ(opt->h(), 16);
}

TEST(LocalOptimizerTest, CutsTheLastRoundAtTheScheduleEnd) {
  std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(1);
  torch::nn::Sequential model = MakeModel(0);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  LocalOptimizerOptions options;
  options.rule.init_h = 4;  // alpha 0: constant H = 4
  options.rule.total_steps = 10;
  absl::StatusOr<LocalOptimizer> opt = LocalOptimizer::Create(sgd, *model, *comms[0], options);
  ASSERT_TRUE(opt.ok()) << opt.status();
  std::vector<int64_t> ends;
  for (int t = 0; t < 10; ++t) {
    Backward(model, sgd);
    absl::StatusOr<bool> averaged = opt->Step();
    ASSERT_TRUE(averaged.ok()) << averaged.status();
    if (*averaged) ends.push_back(opt->step());
  }
  EXPECT_EQ(ends, (std::vector<int64_t>{4, 8, 10}));
}

TEST(LocalOptimizerTest, RejectsBadOptions) {
  std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(1);
  torch::nn::Sequential model = MakeModel(0);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  auto create = [&](const std::function<void(LocalOptimizerOptions&)>& edit) {
    LocalOptimizerOptions options;
    options.rule.total_steps = 100;
    edit(options);
    return LocalOptimizer::Create(sgd, *model, *comms[0], options).status();
  };
  EXPECT_TRUE(create([](LocalOptimizerOptions&) {}).ok());
  const std::vector<std::pair<std::string, std::function<void(LocalOptimizerOptions&)>>> bad = {
      {"alpha", [](LocalOptimizerOptions& o) { o.rule.alpha = -1; }},
      {"power", [](LocalOptimizerOptions& o) { o.rule.power = 0; }},
      {"min_h", [](LocalOptimizerOptions& o) { o.rule.min_h = 0; }},
      {"init_h", [](LocalOptimizerOptions& o) { o.rule.init_h = 0; }},
      {"warmup_steps", [](LocalOptimizerOptions& o) { o.rule.warmup_steps = -1; }},
      {"total_steps",
       [](LocalOptimizerOptions& o) {
         o.rule.alpha = 0.1;
         o.rule.total_steps = 0;
       }},
      {"start_step", [](LocalOptimizerOptions& o) { o.start_step = -5; }},
  };
  for (const auto& [name, edit] : bad) {
    absl::Status s = create(edit);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(name));
  }
}

TEST(LocalOptimizerTest, ReportsAFailedPeerAsAnError) {
  constexpr int kRanks = 2;
  std::vector<std::unique_ptr<Communicator>> comms = MakeGroup(kRanks);
  torch::nn::Sequential model = MakeModel(0);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  LocalOptimizerOptions options;
  options.broadcast_initial_model = false;
  absl::StatusOr<LocalOptimizer> opt = LocalOptimizer::Create(sgd, *model, *comms[0], options);
  ASSERT_TRUE(opt.ok()) << opt.status();
  comms[1].reset();  // the peer is gone: its connections close
  Backward(model, sgd);
  absl::StatusOr<bool> averaged = opt->Step();  // H = 1: averages now
  EXPECT_FALSE(averaged.ok());
  EXPECT_TRUE(comms[0]->aborted());
  Backward(model, sgd);
  EXPECT_EQ(opt->Step().status().code(), absl::StatusCode::kFailedPrecondition);
}

int FreePort() { return testing::FreeLoopbackPort(); }

TEST(DistributedTest, StaticWorldOfTwoRanks) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  std::vector<std::unique_ptr<DistributedContext>> contexts(2);
  OnRanks(2, [&](int r) {
    StaticWorld world{"127.0.0.1", port, r, 2};
    DistributedOptions options;
    options.timeout = absl::Seconds(30);
    absl::StatusOr<std::unique_ptr<DistributedContext>> c = InitStaticWorld(world, options);
    ASSERT_TRUE(c.ok()) << "rank " << r << ": " << c.status();
    contexts[r] = std::move(*c);
  });
  ASSERT_NE(contexts[0], nullptr);
  ASSERT_NE(contexts[1], nullptr);
  std::vector<float> sums(2);
  OnRanks(2, [&](int r) {
    EXPECT_EQ(contexts[r]->rank(), r);
    EXPECT_EQ(contexts[r]->size(), 2);
    EXPECT_EQ(contexts[r]->run_id(), "");
    EXPECT_FALSE(contexts[r]->recipe().has_value());
    torch::Tensor t = torch::full({3}, static_cast<float>(r + 1));
    ASSERT_TRUE(contexts[r]->communicator().AllReduceSum(t).ok());
    sums[r] = t[0].item<float>();
    // The store stays usable for the job's own keys.
    ASSERT_TRUE(contexts[r]->store().Set(absl::StrCat("mine", r), "x").ok());
    EXPECT_TRUE(
        contexts[r]->store().Wait({"mine0", "mine1"}, absl::Now() + absl::Seconds(10)).ok());
    EXPECT_TRUE(contexts[r]->Finish().ok());
  });
  EXPECT_EQ(sums, (std::vector<float>{3, 3}));
}

TEST(DistributedTest, StaticWorldOfOneNeedsNoPort) {
  absl::StatusOr<std::unique_ptr<DistributedContext>> c = InitStaticWorld(StaticWorld{});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->size(), 1);
  torch::Tensor t = torch::ones({2});
  EXPECT_TRUE((*c)->communicator().AllReduceSum(t).ok());
}

TEST(DistributedTest, StaticWorldErrorsAreBoundedAndNamed) {
  EXPECT_EQ(InitStaticWorld(StaticWorld{"127.0.0.1", 1234, 2, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InitStaticWorld(StaticWorld{"", 1234, 0, 2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  DistributedOptions options;
  options.timeout = absl::Seconds(1);
  options.device = "tpu";
  EXPECT_EQ(InitStaticWorld(StaticWorld{}, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.device = "cpu";
  const int port = FreePort();
  // Rank 1 with no rank 0 serving: gives up at the deadline, naming the address.
  absl::Time start = absl::Now();
  absl::Status lonely = InitStaticWorld(StaticWorld{"127.0.0.1", port, 1, 2}, options).status();
  EXPECT_EQ(lonely.code(), absl::StatusCode::kDeadlineExceeded) << lonely;
  EXPECT_THAT(std::string(lonely.message()), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  // Rank 0 whose peer never comes: the rendezvous times out.
  start = absl::Now();
  absl::Status alone = InitStaticWorld(StaticWorld{"127.0.0.1", port, 0, 2}, options).status();
  EXPECT_FALSE(alone.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(DistributedTest, ReadsTheWorldFromTheEnvironment) {
  for (const char* name : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(name);
  absl::StatusOr<StaticWorld> world = StaticWorldFromEnvironment();
  EXPECT_EQ(world.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(world.status().message()), HasSubstr("WORLD_SIZE"));
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "2", 1);
  EXPECT_THAT(std::string(StaticWorldFromEnvironment().status().message()), HasSubstr("RANK=2"));
  ::setenv("RANK", "1", 1);
  EXPECT_THAT(std::string(StaticWorldFromEnvironment().status().message()),
              HasSubstr("MASTER_ADDR"));
  ::setenv("MASTER_ADDR", "10.0.0.1", 1);
  ::setenv("MASTER_PORT", "http", 1);
  EXPECT_THAT(std::string(StaticWorldFromEnvironment().status().message()),
              HasSubstr("MASTER_PORT=http"));
  ::setenv("MASTER_PORT", "29500", 1);
  world = StaticWorldFromEnvironment();
  ASSERT_TRUE(world.ok()) << world.status();
  EXPECT_EQ(world->master_addr, "10.0.0.1");
  EXPECT_EQ(world->master_port, 29500);
  EXPECT_EQ(world->rank, 1);
  EXPECT_EQ(world->world_size, 2);
  EXPECT_EQ(world->local_rank, -1);
  EXPECT_EQ(world->local_world_size, -1);
  EXPECT_FALSE(world->use_agent_store);
  // What torchrun adds.
  ::setenv("LOCAL_RANK", "1", 1);
  ::setenv("LOCAL_WORLD_SIZE", "2", 1);
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
  ::setenv("TORCHELASTIC_RESTART_COUNT", "3", 1);
  world = StaticWorldFromEnvironment();
  ASSERT_TRUE(world.ok()) << world.status();
  EXPECT_EQ(world->local_rank, 1);
  EXPECT_EQ(world->local_world_size, 2);
  EXPECT_TRUE(world->use_agent_store);
  EXPECT_EQ(world->restart_count, 3);
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "False", 1);
  EXPECT_FALSE(StaticWorldFromEnvironment()->use_agent_store);
  ::setenv("LOCAL_RANK", "2", 1);
  EXPECT_THAT(std::string(StaticWorldFromEnvironment().status().message()),
              AllOf(HasSubstr("LOCAL_RANK=2"), HasSubstr("LOCAL_WORLD_SIZE=2")));
  ::setenv("LOCAL_RANK", "0", 1);
  ::setenv("TORCHELASTIC_RESTART_COUNT", "x", 1);
  EXPECT_THAT(std::string(StaticWorldFromEnvironment().status().message()),
              HasSubstr("TORCHELASTIC_RESTART_COUNT=x"));
  for (const char* name :
       {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
        "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"}) {
    ::unsetenv(name);
  }
}

TEST(DistributedTest, AgentStoreConnectionGivesUpAtTheDeadline) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  StaticWorld world{"127.0.0.1", port, 0, 2};
  world.use_agent_store = true;  // nobody serves it: rank 0 must not serve it itself
  DistributedOptions options;
  options.timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  absl::Status s = InitStaticWorld(world, options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

TEST(DistributedTest, JoinsACoordinatorRun) {
  Recipe recipe = QsrRecipe();
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  CoordinatorServer::Options server_options;
  server_options.run.run_id = "lib";
  server_options.run.rendezvous_timeout = absl::Seconds(30);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<int> ranks(2, -1);
  std::vector<float> sums(2);
  OnRanks(2, [&](int i) {
    DistributedOptions options;
    options.worker_id = absl::StrCat("lib-", i);
    absl::StatusOr<std::unique_ptr<DistributedContext>> c =
        InitWithCoordinator((*server)->address(), options);
    ASSERT_TRUE(c.ok()) << c.status();
    DistributedContext& context = **c;
    ranks[i] = context.rank();
    EXPECT_EQ(context.size(), 2);
    EXPECT_EQ(context.run_id(), "lib");
    ASSERT_TRUE(context.recipe().has_value());
    EXPECT_EQ(context.recipe()->alpha, recipe.alpha);
    torch::Tensor t = torch::full({1}, static_cast<float>(context.rank() + 1));
    ASSERT_TRUE(context.communicator().AllReduceSum(t).ok());
    sums[i] = t[0].item<float>();
    EXPECT_TRUE(context.Finish().ok());
    EXPECT_TRUE(context.Finish().ok());  // idempotent
  });
  EXPECT_THAT(ranks, ::testing::UnorderedElementsAre(0, 1));
  EXPECT_EQ(sums, (std::vector<float>{3, 3}));
  // Every worker left without an error, so the coordinator's run is over (no rounds reported).
  EXPECT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(10)));
}

// Two library ranks train with LocalOptimizers created with their coordinator contexts: the
// coordinator commits the rounds they planned (rounds.jsonl in its run folder) and finishes the
// run once both have left.
TEST(DistributedTest, LibraryRoundsAreReportedToTheCoordinator) {
  Recipe recipe = QsrRecipe();
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  testing::TempDir dir;
  CoordinatorServer::Options server_options;
  server_options.run.run_id = "lib-rounds";
  server_options.run.rendezvous_timeout = absl::Seconds(30);
  server_options.run_dir = dir.path() + "/run";
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  OnRanks(2, [&](int i) {
    DistributedOptions options;
    options.worker_id = absl::StrCat("lib-", i);
    absl::StatusOr<std::unique_ptr<DistributedContext>> c =
        InitWithCoordinator((*server)->address(), options);
    ASSERT_TRUE(c.ok()) << c.status();
    torch::nn::Sequential model = MakeModel(10 + i);
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.05));
    LocalOptimizerOptions local;
    local.rule.init_h = 3;  // alpha 0: constant H, cut at total_steps
    local.rule.total_steps = 8;
    absl::StatusOr<LocalOptimizer> opt = LocalOptimizer::Create(sgd, *model, **c, local);
    ASSERT_TRUE(opt.ok()) << opt.status();
    for (int t = 0; t < 8; ++t) {
      torch::Tensor x = torch::randn({16, 8});
      torch::Tensor y = torch::randint(0, 3, {16});
      sgd.zero_grad();
      torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      ASSERT_TRUE(opt->Step(loss.item<double>()).ok());
    }
    EXPECT_EQ(opt->rounds(), 3);
    EXPECT_TRUE((*c)->Finish().ok());
  });
  ASSERT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(30)));
  EXPECT_EQ((*server)->controller().Status(absl::Now()).state(), "FINISHED");
  EXPECT_EQ((*server)->controller().Status(absl::Now()).step(), 8);
  v1::ListRoundsReply rounds = (*server)->controller().Rounds(v1::ListRoundsRequest());
  ASSERT_EQ(rounds.rounds_size(), 3);
  const int64_t starts[] = {0, 3, 6}, hs[] = {3, 3, 2};
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(rounds.rounds(r).step(), starts[r]) << "round " << r;
    EXPECT_EQ(rounds.rounds(r).h(), hs[r]) << "round " << r;
    EXPECT_DOUBLE_EQ(rounds.rounds(r).lr(), 0.05) << "round " << r;
    EXPECT_EQ(rounds.rounds(r).workers(), 2) << "round " << r;
    EXPECT_GT(rounds.rounds(r).train_loss(), 0) << "round " << r;
    // Both ranks hashed the same averaged parameters.
    EXPECT_TRUE(rounds.rounds(r).digest_checked()) << "round " << r;
    EXPECT_TRUE(rounds.rounds(r).identical()) << "round " << r;
  }
  std::vector<std::string> lines = testing::ReadLines(dir.path() + "/run/rounds.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[2], AllOf(HasSubstr("\"step\":6"), HasSubstr("\"h\":2")));
}

// Rounds past the coordinator's recipe (80 steps) are refused: Finish() returns the error, naming
// the field, and the run fails instead of finishing with rounds missing.
TEST(DistributedTest, ARefusedRoundFailsTheRunAndFinishSaysWhy) {
  Recipe recipe = QsrRecipe();
  ASSERT_TRUE(ResolveRecipe(recipe).ok());
  ASSERT_EQ(recipe.TotalSteps(), 80);
  CoordinatorServer::Options server_options;
  server_options.run.run_id = "lib-past";
  server_options.run.rendezvous_timeout = absl::Seconds(30);
  // A library group does not re-form: once both have left with the error, the run fails.
  server_options.run.regroup_timeout = absl::Seconds(5);
  server_options.run.replacement_timeout = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(recipe, server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<absl::Status> finished(2);
  OnRanks(2, [&](int i) {
    DistributedOptions options;
    options.worker_id = absl::StrCat("lib-", i);
    absl::StatusOr<std::unique_ptr<DistributedContext>> c =
        InitWithCoordinator((*server)->address(), options);
    ASSERT_TRUE(c.ok()) << c.status();
    torch::nn::Sequential model = MakeModel(i);
    torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.05));
    LocalOptimizerOptions local;
    local.rule.init_h = 6;  // rounds [0, 6), ..., [78, 84): the last one ends past step 80
    absl::StatusOr<LocalOptimizer> opt = LocalOptimizer::Create(sgd, *model, **c, local);
    ASSERT_TRUE(opt.ok()) << opt.status();
    for (int t = 0; t < 84; ++t) {
      Backward(model, sgd);
      ASSERT_TRUE(opt->Step().ok());
    }
    finished[i] = (*c)->Finish();
  });
  for (const absl::Status& s : finished) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), AllOf(HasSubstr("rounds.h"), HasSubstr("80")));
  }
  ASSERT_TRUE((*server)->AwaitDone(absl::Now() + absl::Seconds(30)));
  EXPECT_EQ((*server)->controller().Status(absl::Now()).state(), "FAILED");
  // The rounds before it were committed.
  EXPECT_EQ((*server)->controller().Rounds(v1::ListRoundsRequest()).rounds_size(), 13);
}

TEST(DistributedTest, CoordinatorUnreachableIsBounded) {
  DistributedOptions options;
  options.timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<DistributedContext>> c =
      InitWithCoordinator(absl::StrCat("127.0.0.1:", FreePort()), options);
  EXPECT_FALSE(c.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

}  // namespace
}  // namespace qsr
