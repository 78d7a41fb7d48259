// Local SGD with the Quadratic Synchronization Rule in your own LibTorch loop, using the qsr
// library: a small MLP learns a random teacher's labels on synthetic data, each rank on its own
// samples, averaging the models at the end of every round.
//
// Run two processes on one machine with torchrun (its agent serves the store):
//   torchrun --nproc_per_node=2 --no_python ./local_sgd
// or by hand, rank 0 serving the store:
//   MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=0 ./local_sgd &
//   MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=1 ./local_sgd
// or join a qsr-coordinator run instead: ./local_sgd --coordinator=HOST:PORT (the coordinator
// then logs every round in its run folder's rounds.jsonl; --steps must not exceed its recipe's
// total steps)
// Flags: --steps=N (default 240), --coordinator=HOST:PORT, --device=cpu|cuda (cuda: the GPU of
// LOCAL_RANK under torchrun).
//
// Prints each round (rank 0), then on every rank a hash of the final parameters, and exits
// non-zero unless every rank ends with identical parameters.
#include <torch/torch.h>

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "qsr/qsr.h"

namespace {

constexpr int64_t kInputs = 16;
constexpr int64_t kClasses = 4;
constexpr int64_t kBatch = 32;
constexpr double kMaxLr = 0.1;

// Your own LR schedule: linear warmup, then cosine decay to 0 at step `total`.
double LearningRate(int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return kMaxLr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  return 0.5 * kMaxLr * (1.0 + std::cos(M_PI * progress));
}

// FNV-1a over the parameters' bytes.
uint64_t ParamsHash(torch::nn::Module& model) {
  uint64_t h = 1469598103934665603ULL;
  for (const torch::Tensor& p : model.parameters()) {
    torch::Tensor c = p.detach().contiguous().cpu();
    const auto* bytes = static_cast<const unsigned char*>(c.data_ptr());
    for (int64_t i = 0; i < c.numel() * static_cast<int64_t>(c.element_size()); ++i) {
      h = (h ^ bytes[i]) * 1099511628211ULL;
    }
  }
  return h;
}

// Whether every rank holds `hash`. Each 16-bit piece is exact in float32, and if the sum over n
// ranks equals n times every rank's own piece, all pieces are equal.
absl::StatusOr<bool> SameOnAllRanks(qsr::Communicator& comm, uint64_t hash,
                                    const torch::Device& device) {
  torch::Tensor pieces = torch::empty({4}, torch::kFloat32);
  for (int i = 0; i < 4; ++i) pieces[i] = static_cast<float>((hash >> (16 * i)) & 0xffff);
  torch::Tensor sums = pieces.to(device, /*non_blocking=*/false, /*copy=*/true);
  if (absl::Status s = comm.AllReduceSum(sums); !s.ok()) return s;
  return torch::equal(sums.cpu(), pieces * static_cast<float>(comm.size()));
}

int Fail(qsr::DistributedContext* context, const absl::Status& status) {
  std::fprintf(stderr, "local_sgd: %s\n", status.ToString().c_str());
  if (context != nullptr) context->Finish(status).IgnoreError();
  return 1;
}

int Run(int argc, char** argv) {
  int64_t steps = 240;
  std::string coordinator;
  qsr::DistributedOptions join_options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--steps=", 0) == 0 && absl::SimpleAtoi(arg.substr(8), &steps) && steps >= 10) {
      continue;
    }
    if (arg.rfind("--coordinator=", 0) == 0) {
      coordinator = arg.substr(14);
      continue;
    }
    if (arg.rfind("--device=", 0) == 0) {
      join_options.device = arg.substr(9);
      continue;
    }
    std::fprintf(stderr,
                 "usage: %s [--steps=N (>= 10)] [--coordinator=HOST:PORT] [--device=cpu|cuda]\n",
                 argv[0]);
    return 2;
  }

  // 1. Join the group: rank, world size and a communicator.
  absl::StatusOr<std::unique_ptr<qsr::DistributedContext>> joined =
      coordinator.empty() ? qsr::InitFromEnvironment(join_options)
                          : qsr::InitWithCoordinator(coordinator, join_options);
  if (!joined.ok()) return Fail(nullptr, joined.status());
  qsr::DistributedContext& context = **joined;
  const int rank = context.rank();
  // "cuda" became this process's GPU (cuda:LOCAL_RANK under torchrun).
  const torch::Device device(context.device());
  std::printf("rank %d of %d: local rank %d of %d, device %s\n", rank, context.size(),
              context.local_rank(), context.local_size(), context.device().c_str());
  torch::set_num_threads(1);

  // 2. Your model, data and optimizer. The teacher is the same on every rank; the samples differ.
  torch::manual_seed(1234);
  torch::Tensor teacher = torch::randn({kInputs, kClasses}).to(device);
  torch::manual_seed(rank);  // different initial weights: LocalOptimizer broadcasts rank 0's
  torch::nn::Sequential model(torch::nn::Linear(kInputs, 32), torch::nn::ReLU(),
                              torch::nn::Linear(32, kClasses));
  model->to(device);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(kMaxLr).momentum(0.9));

  // 3. Wrap the optimizer: QSR with H = floor((alpha / lr)^2), at least min_h, after warmup.
  const int64_t warmup = steps / 10;
  qsr::LocalOptimizerOptions options;
  options.rule.alpha = 0.2;  // H = 4 at the peak LR 0.1, growing as the LR decays
  options.rule.power = 2;
  options.rule.min_h = 2;
  options.rule.init_h = 2;  // H during warmup
  options.rule.warmup_steps = warmup;
  options.rule.total_steps = steps;
  // Created with the context, it reports every round (to the coordinator, when there is one).
  absl::StatusOr<qsr::LocalOptimizer> local =
      qsr::LocalOptimizer::Create(sgd, *model, context, options);
  if (!local.ok()) return Fail(&context, local.status());

  // 4. Train. Step() replaces sgd.step() and says when a round ended with averaged models.
  double round_loss = 0;
  for (int64_t t = 0; t < steps; ++t) {
    for (auto& group : sgd.param_groups()) group.options().set_lr(LearningRate(t, warmup, steps));
    torch::Tensor x = torch::randn({kBatch, kInputs}).to(device);
    torch::Tensor y = x.matmul(teacher).argmax(1);
    sgd.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    round_loss += loss.item<double>();
    absl::StatusOr<bool> averaged = local->Step(loss.item<double>());  // the loss: for the report
    if (!averaged.ok()) return Fail(&context, averaged.status());
    if (*averaged) {
      const qsr::Round& round = local->last_round();
      if (rank == 0) {
        std::printf("round %3" PRId64 ": steps [%4" PRId64 ", %4" PRId64 ") H=%3" PRId64
                    " lr=%.4f loss=%.4f\n",
                    round.index, round.start_step, round.end_step(), round.h, round.lr,
                    round_loss / static_cast<double>(round.h));
      }
      round_loss = 0;
    }
  }

  // 5. Every rank must end with the same parameters.
  const uint64_t hash = ParamsHash(*model);
  absl::StatusOr<bool> same = SameOnAllRanks(context.communicator(), hash, device);
  if (!same.ok()) return Fail(&context, same.status());
  std::printf("rank %d of %d: %" PRId64 " steps, %" PRId64 " rounds, final params hash %016" PRIx64
              "%s\n",
              rank, context.size(), local->step(), local->rounds(), hash,
              *same ? "" : " DIFFERS ACROSS RANKS");
  std::fflush(stdout);
  if (!*same) return Fail(&context, absl::InternalError("parameters differ across ranks"));
  if (absl::Status s = context.Finish(); !s.ok()) {
    std::fprintf(stderr, "local_sgd: leaving: %s\n", s.ToString().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {  // LibTorch reports errors by exception.
    std::fprintf(stderr, "local_sgd: %s\n", e.what());
    return 1;
  }
}
