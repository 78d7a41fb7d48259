#include "worker/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/lr_schedule.h"
#include "common/recipe.h"
#include "coordinator/log_prefix.h"
#include "glog/logging.h"
#include "worker/checkpoint.h"
#include "worker/comm/communicator_factory.h"
#include "worker/comm/gradient_bucketer.h"
#include "worker/comm/model_averager.h"
#include "worker/data/batch_loader.h"
#include "worker/data/fashion_mnist.h"
#include "worker/evaluator.h"
#include "worker/model/models.h"
#include "worker/optimizer_factory.h"
#include "worker/precision.h"
#include "worker/report_sender.h"
#include "worker/torch_call.h"

namespace qsr {
namespace {

// How often a worker logs its own progress.
constexpr absl::Duration kLogInterval = absl::Seconds(15);

uint64_t Fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

uint64_t ParamsDigest(torch::nn::Module& model) {
  uint64_t h = 1469598103934665603ULL;
  for (const torch::Tensor& p : model.parameters()) {
    torch::Tensor c = p.detach().contiguous().cpu();
    h = Fnv1a(c.data_ptr(), c.numel() * c.element_size(), h);
  }
  return h;
}

class Worker {
 public:
  Worker(CoordinatorClient* client, const TrainerOptions& options)
      : client_(client), options_(options), store_(client) {}

  absl::StatusOr<TrainerResult> Run();

 private:
  absl::Status Setup();
  absl::Status TrainRound(const v1::RoundPlan& plan);
  absl::Status Evaluate(int64_t step);
  absl::Status AverageOptimizerState();
  absl::Status LoadInitialState();
  absl::Status MaybeCheckpoint(int64_t step);
  std::string CheckpointDir() const;
  void Leave(const std::string& error);

  CoordinatorClient* client_;
  TrainerOptions options_;
  CoordinatorStore store_;
  v1::JoinReply join_;
  Recipe recipe_;
  std::unique_ptr<LrSchedule> schedule_;
  Dataset train_, test_;
  std::shared_ptr<Model> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<ModelAverager> averager_;
  std::unique_ptr<ModelAverager> moments_;  // AdamW moments, with avg_m / avg_v
  // Data-parallel gradients in buckets that overlap with backward (bucket_mb > 0); destroyed
  // before comm_, which it uses.
  std::unique_ptr<GradientBucketer> bucketer_;
  std::unique_ptr<BatchLoader> loader_;
  std::unique_ptr<ReportSender> reports_;
  torch::Device device_ = torch::kCPU;
  TrainerResult result_;
  absl::Time last_log_ = absl::Now();
};

absl::Status Worker::Setup() {
  if (options_.threads > 0) torch::set_num_threads(options_.threads);
  if (absl::Status s = TorchCall("device", [&] { device_ = torch::Device(options_.device); });
      !s.ok()) {
    return absl::InvalidArgumentError("--device " + options_.device +
                                      " is not a device; allowed: cpu, cuda:N");
  }
  if (absl::Status s =
          [&] {
            absl::StatusOr<Recipe> r = ParseRecipeYaml(join_.recipe_yaml(), "coordinator recipe");
            if (!r.ok()) return r.status();
            recipe_ = *r;
            return ResolveRecipe(recipe_);
          }();
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPrecision(recipe_.precision, device_); !s.ok()) return s;
  schedule_ = std::make_unique<LrSchedule>(recipe_);
  const std::string data_dir = options_.data_dir.empty() ? recipe_.data_dir : options_.data_dir;
  absl::StatusOr<Dataset> train = LoadDataset(recipe_.dataset, data_dir, /*train=*/true);
  if (!train.ok()) return train.status();
  absl::StatusOr<Dataset> test = LoadDataset(recipe_.dataset, data_dir, /*train=*/false);
  if (!test.ok()) return test.status();
  train_ = *train;
  test_ = *test;

  torch::manual_seed(std::max<int64_t>(0, recipe_.init_model_by_seed));
  // The model's input follows the data: 1x28x28 for Fashion-MNIST, 3x32x32 for CIFAR.
  const ModelInput input{train_.images.size(1), train_.images.size(2), train_.images.size(3)};
  absl::StatusOr<std::shared_ptr<Model>> model =
      MakeModel(recipe_.model, train_.num_classes, input);
  if (!model.ok()) return model.status();
  model_ = *model;
  if (absl::Status s = TorchCall("moving the model", [&] { model_->to(device_); }); !s.ok()) {
    return s;
  }
  optimizer_ = MakeOptimizer(recipe_, *model_);
  if (absl::Status s = LoadInitialState(); !s.ok()) return s;

  // A fresh key prefix per generation and communicator keeps a re-formed group from reading a
  // previous group's addresses.
  PrefixStore scoped(absl::StrCat(join_.run_id(), "/g", join_.generation(), "/c0"), &store_);
  CommunicatorOptions comm_options;
  comm_options.hostname = options_.host;
  comm_options.timeout = absl::Milliseconds(join_.rendezvous_timeout_ms());
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateCommunicator(device_, &scoped, join_.rank(), join_.world_size(), comm_options);
  if (!comm.ok()) return comm.status();
  comm_ = std::move(*comm);
  absl::StatusOr<ModelAverager> averager = ModelAverager::ForModule(*model_);
  if (!averager.ok()) return averager.status();
  averager_ = std::make_unique<ModelAverager>(std::move(*averager));
  if (absl::Status s = averager_->BroadcastFrom(*comm_, 0); !s.ok()) return s;
  if ((recipe_.DataParallel() || recipe_.post_local_epoch > 0) && recipe_.bucket_mb > 0) {
    BucketerOptions bucket_options;
    bucket_options.bucket_bytes =
        std::max<int64_t>(1, static_cast<int64_t>(recipe_.bucket_mb * (1 << 20)));
    absl::StatusOr<std::unique_ptr<GradientBucketer>> bucketer =
        GradientBucketer::Create(model_->parameters(), comm_.get(), bucket_options);
    if (!bucketer.ok()) return bucketer.status();
    bucketer_ = std::move(*bucketer);
  }

  SamplerConfig sampler;
  sampler.seed = static_cast<uint64_t>(recipe_.seed);
  sampler.rank = join_.rank();
  sampler.world = join_.world_size();
  sampler.local_batch = recipe_.LocalBatchSize();
  sampler.steps_per_epoch = recipe_.steps_per_epoch;
  // CIFAR trains with the usual random crop (4-pixel padding) and flip; Fashion-MNIST without.
  absl::StatusOr<std::shared_ptr<const DataSource>> source = MakeTensorSource(
      train_, recipe_.dataset.rfind("cifar", 0) == 0 ? kCifarTrainAugment : TensorAugment{});
  if (!source.ok()) return source.status();
  LoaderOptions loader_options;
  loader_options.num_workers = static_cast<int>(std::max<int64_t>(1, recipe_.nw));
  loader_options.augment_seed = static_cast<uint64_t>(recipe_.seed);
  loader_options.start_step = join_.start_step();
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(*source, sampler, loader_options);
  if (!loader.ok()) return loader.status();
  loader_ = std::move(*loader);

  v1::ReportRequest identity;
  identity.set_worker_id(options_.worker_id);
  identity.set_rank(join_.rank());
  identity.set_generation(join_.generation());
  reports_ = std::make_unique<ReportSender>(client_, identity);
  return absl::OkStatus();
}

absl::Status Worker::TrainRound(const v1::RoundPlan& plan) {
  const absl::Time start = absl::Now();
  const int64_t bytes_before = comm_->bytes_sent();
  const int64_t acc = recipe_.AccumulationSteps();
  // The loss is summed on the device and read once per round: reading it every micro-batch
  // (item()) would make the host wait for the GPU at every step.
  torch::Tensor loss_sum;
  if (absl::Status s =
          TorchCall("loss accumulator",
                    [&] {
                      loss_sum = torch::zeros(
                          {}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
                    });
      !s.ok()) {
    return s;
  }
  model_->train();
  for (int64_t t = plan.start_step(); t < plan.start_step() + plan.h(); ++t) {
    absl::StatusOr<Batch> batch = loader_->Next();
    if (!batch.ok()) return batch.status();
    if (batch->step != t) {
      return absl::InternalError(
          absl::StrCat("data loader is at step ", batch->step, ", the round at step ", t));
    }
    SetLearningRate(*optimizer_, schedule_->At(t));
    absl::Status s = TorchCall("training step", [&] {
      optimizer_->zero_grad();
      std::vector<torch::Tensor> xs = batch->x.to(device_, /*non_blocking=*/true).chunk(acc);
      std::vector<torch::Tensor> ys = batch->y.to(device_, /*non_blocking=*/true).chunk(acc);
      for (size_t i = 0; i < xs.size(); ++i) {
        torch::Tensor loss;
        {
          AutocastScope autocast(recipe_.precision == "bf16", device_.type());
          loss = torch::nn::functional::cross_entropy(
              model_->forward(xs[i]), ys[i],
              torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(
                  recipe_.label_smoothing));
        }
        // Only the last micro-batch's backward sends gradients (the earlier ones accumulate).
        if (plan.data_parallel() && bucketer_ && i + 1 == xs.size()) bucketer_->Arm();
        (loss / static_cast<double>(acc)).backward();
        loss_sum.add_(loss.detach(), 1.0 / static_cast<double>(acc));
      }
    });
    if (!s.ok()) return s;
    if (plan.data_parallel()) {
      if (absl::Status s = bucketer_ ? bucketer_->Finish() : averager_->AllReduceGradients(*comm_);
          !s.ok()) {
        return s;
      }
    }
    if (recipe_.gradient_clipping > 0) {
      // After the all-reduce for data-parallel rounds (the global gradient), on the local
      // gradient for local rounds, as the authors do.
      if (absl::Status s = TorchCall("gradient clipping",
                                     [&] {
                                       torch::nn::utils::clip_grad_norm_(model_->parameters(),
                                                                         recipe_.gradient_clipping);
                                     });
          !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = TorchCall("optimizer step", [&] { optimizer_->step(); }); !s.ok()) {
      return s;
    }
  }
  // Data-parallel parameters are already identical; only BatchNorm statistics drift, and they
  // matter only for evaluation, so they are averaged before evaluating (and at the end).
  if (!plan.data_parallel() || plan.eval_after()) {
    if (absl::Status s = averager_->Average(*comm_); !s.ok()) return s;
    if (!plan.data_parallel()) {
      if (absl::Status s = AverageOptimizerState(); !s.ok()) return s;
    }
  }
  double train_loss = 0;
  if (absl::Status s = TorchCall("reading the loss", [&] { train_loss = loss_sum.item<double>(); });
      !s.ok()) {
    return s;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  v1::RoundReport report;
  report.set_round(plan.round());
  report.set_start_step(plan.start_step());
  report.set_h(plan.h());
  report.set_train_loss(train_loss / static_cast<double>(plan.h()));
  report.set_samples(plan.h() * recipe_.LocalBatchSize());
  report.set_seconds(seconds);
  report.set_bytes_sent(comm_->bytes_sent() - bytes_before);
  if (!plan.data_parallel() || plan.eval_after()) report.set_params_digest(ParamsDigest(*model_));
  reports_->AddRound(report);
  result_.rounds++;
  result_.steps = plan.start_step() + plan.h();
  if (absl::Now() - last_log_ >= kLogInterval) {
    last_log_ = absl::Now();
    LOG(INFO) << absl::StrFormat(
        "rank %d: step %d/%d round %d H=%d lr=%.4g loss=%.4f %.0f samples/s", join_.rank(),
        result_.steps, recipe_.TotalSteps(), plan.round(), plan.h(), plan.lr(), report.train_loss(),
        report.samples() / std::max(seconds, 1e-9));
  }
  return absl::OkStatus();
}

absl::Status Worker::Evaluate(int64_t step) {
  if (recipe_.bn) {
    // Spread the re-estimation batches over the workers, then average the statistics.
    const int64_t batches = (recipe_.bn_batches + join_.world_size() - 1) / join_.world_size();
    absl::StatusOr<int> layers = ReestimateBatchNorm(
        *model_, train_, batches, recipe_.physical_batch_size,
        static_cast<uint64_t>(recipe_.seed) * 1000003u + static_cast<uint64_t>(step) * 31u +
            static_cast<uint64_t>(join_.rank()),
        device_);
    if (!layers.ok()) return layers.status();
    if (*layers > 0) {
      if (absl::Status s = averager_->Average(*comm_); !s.ok()) return s;
    }
  }
  absl::StatusOr<EvalResult> r =
      qsr::Evaluate(*model_, test_, *comm_, device_, recipe_.eval_batch_size);
  if (!r.ok()) return r.status();
  v1::EvalReport eval;
  eval.set_step(step);
  eval.set_epoch(static_cast<double>(step) / recipe_.steps_per_epoch);
  eval.set_test_loss(r->loss);
  eval.set_test_acc(r->acc1);
  eval.set_test_acc5(r->acc5);
  eval.set_examples(r->examples);
  result_.test_acc = eval.test_acc();
  if (join_.rank() == 0) {
    LOG(INFO) << absl::StrFormat(
        "eval at step %d (epoch %.2f): test_acc=%.4f top5=%.4f test_loss=%.4f", step, eval.epoch(),
        eval.test_acc(), r->acc5, eval.test_loss());
  }
  reports_->AddEval(eval);
  return MaybeCheckpoint(step);
}

absl::Status Worker::AverageOptimizerState() {
  if (!recipe_.avg_m && !recipe_.avg_v) return absl::OkStatus();
  if (moments_ == nullptr) {
    // AdamW creates its state at the first step; from then on the tensors are updated in place.
    std::vector<torch::Tensor> moments =
        AdamMoments(*optimizer_, model_->parameters(), recipe_.avg_m, recipe_.avg_v);
    if (moments.empty()) return absl::OkStatus();
    absl::StatusOr<ModelAverager> averager = ModelAverager::Create(moments);
    if (!averager.ok()) return averager.status();
    moments_ = std::make_unique<ModelAverager>(std::move(*averager));
  }
  return moments_->Average(*comm_);
}

std::string Worker::CheckpointDir() const {
  return options_.checkpoint_dir.empty() ? absl::StrCat("runs/", join_.run_id(), "/checkpoints")
                                         : options_.checkpoint_dir;
}

absl::Status Worker::LoadInitialState() {
  // Identical starting weights on every worker come from the seed, or from one file.
  if (recipe_.init_model_by_seed == -1) {
    if (absl::Status s = LoadModule(*model_, recipe_.init_model_path); !s.ok()) return s;
  }
  if (!recipe_.resume_pth.empty()) {
    if (absl::Status s = LoadModule(*model_, recipe_.resume_pth); !s.ok()) return s;
  }
  if (!recipe_.optimizer_resume_pth.empty()) {
    const std::string path =
        recipe_.multiple_optimizers
            ? absl::StrCat(recipe_.optimizer_resume_pth, "/rank=", join_.rank(), ".pt")
            : recipe_.optimizer_resume_pth;
    if (absl::Status s = LoadOptimizer(*optimizer_, path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Worker::MaybeCheckpoint(int64_t step) {
  const int64_t spe = recipe_.steps_per_epoch;
  const int64_t epoch = step / spe;
  const bool due = recipe_.save_freq > 0 && step > 0 && step % spe == 0 &&
                   (epoch % recipe_.save_freq == 0 || step == recipe_.TotalSteps());
  if (!due) return absl::OkStatus();
  const std::string dir = CheckpointDir();
  if (join_.rank() == 0) {
    if (absl::Status s = SaveModule(*model_, dir + "/" + ModelCheckpointName(step, epoch));
        !s.ok()) {
      return s;
    }
  }
  if (recipe_.save_opt) {
    const std::string name = OptimizerCheckpointName(step, epoch);
    if (recipe_.multiple_optimizers) {
      return SaveOptimizer(*optimizer_,
                           absl::StrCat(dir, "/", name, "/rank=", join_.rank(), ".pt"));
    }
    if (join_.rank() == 0) return SaveOptimizer(*optimizer_, dir + "/" + name + ".pt");
  }
  return absl::OkStatus();
}

void Worker::Leave(const std::string& error) {
  if (reports_) {
    if (absl::Status s = reports_->Flush(absl::Now() + absl::Seconds(30)); !s.ok()) {
      LOG(WARNING) << "some reports were not delivered: " << s;
    }
  }
  v1::LeaveRequest leave;
  leave.set_worker_id(options_.worker_id);
  leave.set_rank(join_.rank());
  leave.set_generation(join_.generation());
  leave.set_error(error);
  if (absl::StatusOr<v1::LeaveReply> r = client_->Leave(leave, absl::Now() + absl::Seconds(10));
      !r.ok()) {
    LOG(WARNING) << "leave: " << r.status();
  }
}

absl::StatusOr<TrainerResult> Worker::Run() {
  v1::JoinRequest join;
  join.set_worker_id(options_.worker_id);
  join.set_host(options_.host);
  join.set_device(options_.device);
  absl::StatusOr<v1::JoinReply> joined = JoinWithRetry(client_, join, options_.connect_timeout);
  if (!joined.ok()) return joined.status();
  if (joined->outcome().code() != v1::Outcome::OK) {
    return absl::FailedPreconditionError("coordinator refused to admit this worker: " +
                                         joined->outcome().message());
  }
  join_ = *joined;
  result_.rank = join_.rank();
  SetLogContext(join_.run_id(), absl::StrCat(join_.rank()));
  LOG(INFO) << "joined run " << join_.run_id() << " as rank " << join_.rank() << " of "
            << join_.world_size() << " (generation " << join_.generation() << ")";

  absl::Status status = Setup();
  if (status.ok() && recipe_.eval_on_start) status = Evaluate(join_.start_step());
  int64_t next_round = join_.start_round();
  while (status.ok()) {
    v1::NextRoundsRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_rank(join_.rank());
    request.set_generation(join_.generation());
    request.set_next_round(next_round);
    absl::StatusOr<v1::NextRoundsReply> reply = client_->NextRounds(
        request,
        absl::Now() + absl::Milliseconds(join_.rendezvous_timeout_ms()) + absl::Seconds(10));
    if (!reply.ok()) {
      status = reply.status();
      break;
    }
    if (reply->outcome().code() == v1::Outcome::RUN_FINISHED) break;
    if (reply->outcome().code() != v1::Outcome::OK) {
      status = absl::AbortedError(reply->outcome().message());
      break;
    }
    for (const v1::RoundPlan& plan : reply->rounds()) {
      status = TrainRound(plan);
      if (status.ok() && plan.eval_after()) status = Evaluate(plan.start_step() + plan.h());
      if (!status.ok()) break;
      next_round = plan.round() + 1;
    }
  }
  if (!status.ok()) {
    LOG(ERROR) << "rank " << join_.rank() << ": " << status;
    if (comm_) comm_->Abort(std::string(status.message()));
  }
  if (model_) result_.params_hash = ParamsDigest(*model_);
  if (comm_) result_.bytes_sent = comm_->bytes_sent();
  Leave(status.ok() ? "" : std::string(status.message()));
  if (!status.ok()) return status;
  return result_;
}

}  // namespace

absl::StatusOr<TrainerResult> RunTrainer(CoordinatorClient* client, const TrainerOptions& options) {
  Worker worker(client, options);
  return worker.Run();
}

}  // namespace qsr
