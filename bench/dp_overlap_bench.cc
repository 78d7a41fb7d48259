// qsr-bench-dp-overlap: the data-parallel training step with and without overlapping the gradient
// all-reduce with backward, for 2 Gloo ranks (threads of this process, loopback TCP), measured in
// the same run.
//
// Each step on each rank: zero_grad, forward, cross-entropy, backward, gradient averaging, SGD
// step. "no overlap" averages with ModelAverager::AllReduceGradients after backward (one flat
// all-reduce, the trainer's path with bucket_mb: 0); "overlap" with GradientBucketer (buckets of
// --bucket-mb all-reduced while backward runs, the trainer's default). The two modes alternate in
// blocks of --steps, --rounds times, so drift in machine load hits both alike. Prints one line:
//   bench dp_overlap model=... ranks=2 ... no_overlap_step_ms=... overlap_step_ms=... ratio=...
// where ratio = overlap / no overlap step time (< 1: overlap is faster).
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "rendezvous/store.h"
#include "worker/comm/gloo_communicator.h"
#include "worker/comm/gradient_bucketer.h"
#include "worker/comm/model_averager.h"
#include "worker/model/models.h"

namespace qsr {
namespace {

constexpr int kRanks = 2;

struct Config {
  std::string model;
  int64_t batch, steps, warmup, rounds;
  double bucket_mb;
  ModelInput input;
};

struct RankResult {
  absl::Status status;
  double no_overlap_s = 0, overlap_s = 0;
  int buckets = 0;
  int64_t params = 0;
};

void RunRank(const Config& config, GlooCommunicator& comm, RankResult& out) {
  torch::manual_seed(1);  // same weights on both ranks
  absl::StatusOr<std::shared_ptr<Model>> made = MakeModel(config.model, 10, config.input);
  if (!made.ok()) {
    out.status = made.status();
    return;
  }
  std::shared_ptr<Model> model = *made;
  model->train();
  for (const auto& p : model->parameters()) out.params += p.numel();
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  absl::StatusOr<ModelAverager> averager = ModelAverager::ForModule(*model);
  BucketerOptions options;
  options.bucket_bytes = static_cast<int64_t>(config.bucket_mb * (1 << 20));
  absl::StatusOr<std::unique_ptr<GradientBucketer>> bucketer =
      GradientBucketer::Create(model->parameters(), &comm, options);
  if (!averager.ok() || !bucketer.ok()) {
    out.status = averager.ok() ? bucketer.status() : averager.status();
    return;
  }
  out.buckets = (*bucketer)->num_buckets();
  torch::manual_seed(100 + comm.rank());
  const torch::Tensor x =
      torch::randn({config.batch, config.input.channels, config.input.height, config.input.width});
  const torch::Tensor y = torch::randint(0, 10, {config.batch});

  auto step = [&](bool overlap) -> absl::Status {
    sgd.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    if (overlap) (*bucketer)->Arm();
    loss.backward();
    absl::Status s = overlap ? (*bucketer)->Finish() : averager->AllReduceGradients(comm);
    if (s.ok()) sgd.step();
    return s;
  };
  auto block = [&](bool overlap, int64_t steps, double* seconds) -> absl::Status {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) {
      if (absl::Status s = step(overlap); !s.ok()) return s;
    }
    if (seconds != nullptr) {
      *seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return absl::OkStatus();
  };
  for (bool overlap : {false, true}) {
    if (absl::Status s = block(overlap, config.warmup, nullptr); !s.ok()) {
      out.status = s;
      return;
    }
  }
  for (int64_t r = 0; r < config.rounds; ++r) {
    // Alternate which mode goes first, so neither always follows the other.
    for (bool overlap : {r % 2 == 1, r % 2 == 0}) {
      absl::Status s = block(overlap, config.steps, overlap ? &out.overlap_s : &out.no_overlap_s);
      if (!s.ok()) {
        out.status = s;
        return;
      }
    }
  }
}

int Main(int argc, char** argv) {
  FlagParser flags("qsr-bench-dp-overlap",
                   "qsr-bench-dp-overlap [--model resnet18] [--batch 16] [--steps 5] ...\n"
                   "Data-parallel step time with and without all-reduce/backward overlap, 2 Gloo "
                   "ranks on this machine.");
  flags.Add("model", "resnet18", "a model of the worker's zoo (mlp, cnn, resnet18, ...)");
  flags.Add("image", "32", "input size: 3xNxN (1x28x28 for mlp and cnn)");
  flags.Add("batch", "16", "samples per step per rank");
  flags.Add("steps", "5", "timed steps per block");
  flags.Add("rounds", "4", "blocks per mode, alternating");
  flags.Add("warmup", "2", "untimed steps per mode first");
  flags.Add("bucket-mb", "25", "bucket size of the overlapped mode, MiB");
  flags.Add("threads", "1", "intra-op threads (shared by both ranks)");
  if (std::optional<int> exit_code = flags.ParseForMain(argc, argv)) return *exit_code;
  Config config;
  config.model = flags.Get("model");
  absl::StatusOr<int64_t> image = flags.GetInt("image"), batch = flags.GetInt("batch"),
                          steps = flags.GetInt("steps"), rounds = flags.GetInt("rounds"),
                          warmup = flags.GetInt("warmup"), threads = flags.GetInt("threads");
  absl::StatusOr<double> bucket_mb = flags.GetDouble("bucket-mb");
  if (!image.ok() || !batch.ok() || !steps.ok() || !rounds.ok() || !warmup.ok() || !threads.ok() ||
      !bucket_mb.ok() || *image < 8 || *batch < 1 || *steps < 1 || *rounds < 1 || *warmup < 0 ||
      *threads < 1 || *bucket_mb <= 0) {
    std::cerr << "qsr-bench-dp-overlap: --image >= 8, --batch, --steps, --rounds, --threads >= 1, "
                 "--warmup >= 0 and --bucket-mb > 0 must be numbers\n";
    return 2;
  }
  config.batch = *batch;
  config.steps = *steps;
  config.rounds = *rounds;
  config.warmup = *warmup;
  config.bucket_mb = *bucket_mb;
  config.input = (config.model == "mlp" || config.model == "cnn") ? ModelInput{1, 28, 28}
                                                                  : ModelInput{3, *image, *image};
  torch::set_num_threads(static_cast<int>(*threads));

  InMemoryStore store;
  std::vector<std::unique_ptr<GlooCommunicator>> comms(kRanks);
  std::vector<RankResult> results(kRanks);
  std::vector<std::thread> threads_;
  for (int r = 0; r < kRanks; ++r) {
    threads_.emplace_back([&, r] {
      PrefixStore scoped("bench", &store);
      GlooOptions options;
      options.timeout = absl::Seconds(120);
      auto comm = GlooCommunicator::Create(&scoped, r, kRanks, options);
      if (!comm.ok()) {
        results[r].status = comm.status();
        return;
      }
      comms[r] = std::move(*comm);
      RunRank(config, *comms[r], results[r]);
      if (!results[r].status.ok()) comms[r]->Abort(std::string(results[r].status.message()));
    });
  }
  for (auto& t : threads_) t.join();
  for (int r = 0; r < kRanks; ++r) {
    if (!results[r].status.ok()) {
      std::cerr << "qsr-bench-dp-overlap: rank " << r << ": " << results[r].status << "\n";
      return 1;
    }
  }
  const RankResult& r0 = results[0];
  const double n = static_cast<double>(config.steps * config.rounds);
  const double plain_ms = 1000 * r0.no_overlap_s / n;
  const double overlap_ms = 1000 * r0.overlap_s / n;
  std::cout << absl::StrFormat(
      "bench dp_overlap model=%s params=%d grad_mb=%.1f ranks=%d backend=gloo batch=%d "
      "threads=%d bucket_mb=%g buckets=%d steps=%d no_overlap_step_ms=%.1f overlap_step_ms=%.1f "
      "ratio=%.3f\n",
      config.model, r0.params, r0.params * 4.0 / (1 << 20), kRanks, config.batch, *threads,
      config.bucket_mb, r0.buckets, config.steps * config.rounds, plain_ms, overlap_ms,
      overlap_ms / plain_ms);
  return 0;
}

}  // namespace
}  // namespace qsr

int main(int argc, char** argv) { return qsr::Main(argc, argv); }
