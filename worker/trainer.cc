#include "worker/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/lr_schedule.h"
#include "common/recipe.h"
#include "glog/logging.h"
#include "worker/comm/communicator_factory.h"
#include "worker/comm/model_averager.h"
#include "worker/data/batch_loader.h"
#include "worker/data/fashion_mnist.h"
#include "worker/model/models.h"
#include "worker/report_sender.h"

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

// Runs `fn`, turning a LibTorch exception into a Status.
template <typename Fn>
absl::Status TorchCall(const char* what, Fn&& fn) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

absl::StatusOr<v1::JoinReply> JoinWithRetry(CoordinatorClient* client,
                                            const v1::JoinRequest& request,
                                            absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    absl::StatusOr<v1::JoinReply> reply =
        client->Join(request, std::min(deadline, absl::Now() + absl::Seconds(10)));
    if (reply.ok() || !absl::IsUnavailable(reply.status()) || absl::Now() + backoff > deadline) {
      return reply;
    }
    absl::SleepFor(backoff);  // The coordinator is not up yet: back off and retry.
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const Recipe& r, torch::nn::Module& model) {
  if (r.Adam()) {
    return std::make_unique<torch::optim::AdamW>(
        model.parameters(), torch::optim::AdamWOptions(r.max_lr)
                                .betas({r.beta1, r.beta2})
                                .eps(r.eps)
                                .weight_decay(r.wd));
  }
  return std::make_unique<torch::optim::SGD>(model.parameters(),
                                             torch::optim::SGDOptions(r.max_lr)
                                                 .momentum(r.momentum)
                                                 .nesterov(r.nesterov)
                                                 .weight_decay(r.wd));
}

void SetLearningRate(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

class Worker {
 public:
  Worker(CoordinatorClient* client, const TrainerOptions& options)
      : client_(client), options_(options), store_(client) {}

  absl::StatusOr<TrainerResult> Run();

 private:
  absl::Status Setup();
  absl::Status TrainRound(const v1::RoundPlan& plan);
  absl::Status Evaluate(const v1::RoundPlan& plan);
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
  if (absl::Status s = [&] {
        absl::StatusOr<Recipe> r = ParseRecipeYaml(join_.recipe_yaml(), "coordinator recipe");
        if (!r.ok()) return r.status();
        recipe_ = *r;
        return ResolveRecipe(recipe_);
      }();
      !s.ok()) {
    return s;
  }
  schedule_ = std::make_unique<LrSchedule>(recipe_);
  const std::string data_dir = options_.data_dir.empty() ? recipe_.data_dir : options_.data_dir;
  absl::StatusOr<Dataset> train = LoadDataset(recipe_.dataset, data_dir, /*train=*/true);
  if (!train.ok()) return train.status();
  absl::StatusOr<Dataset> test = LoadDataset(recipe_.dataset, data_dir, /*train=*/false);
  if (!test.ok()) return test.status();
  train_ = *train;
  test_ = *test;

  torch::manual_seed(recipe_.init_model_by_seed);
  absl::StatusOr<std::shared_ptr<Model>> model = MakeModel(recipe_.model, train_.num_classes);
  if (!model.ok()) return model.status();
  model_ = *model;
  if (absl::Status s = TorchCall("moving the model", [&] { model_->to(device_); }); !s.ok()) {
    return s;
  }
  optimizer_ = MakeOptimizer(recipe_, *model_);

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

  SamplerConfig sampler;
  sampler.seed = static_cast<uint64_t>(recipe_.seed);
  sampler.rank = join_.rank();
  sampler.world = join_.world_size();
  sampler.local_batch = recipe_.LocalBatchSize();
  sampler.steps_per_epoch = recipe_.steps_per_epoch;
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(train_, sampler, /*prefetch=*/2, join_.start_step());
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
  double loss_sum = 0;
  model_->train();
  for (int64_t t = plan.start_step(); t < plan.start_step() + plan.h(); ++t) {
    absl::StatusOr<Batch> batch = loader_->Next();
    if (!batch.ok()) return batch.status();
    if (batch->step != t) {
      return absl::InternalError(absl::StrCat("data loader is at step ", batch->step,
                                              ", the round at step ", t));
    }
    SetLearningRate(*optimizer_, schedule_->At(t));
    absl::Status s = TorchCall("training step", [&] {
      optimizer_->zero_grad();
      std::vector<torch::Tensor> xs = batch->x.to(device_, /*non_blocking=*/true).chunk(acc);
      std::vector<torch::Tensor> ys = batch->y.to(device_, /*non_blocking=*/true).chunk(acc);
      for (size_t i = 0; i < xs.size(); ++i) {
        torch::Tensor loss = torch::nn::functional::cross_entropy(model_->forward(xs[i]), ys[i]);
        (loss / static_cast<double>(acc)).backward();
        loss_sum += loss.item<double>() / static_cast<double>(acc);
      }
    });
    if (!s.ok()) return s;
    if (recipe_.DataParallel()) {
      if (absl::Status s = averager_->AllReduceGradients(*comm_); !s.ok()) return s;
    }
    if (absl::Status s = TorchCall("optimizer step", [&] { optimizer_->step(); }); !s.ok()) {
      return s;
    }
  }
  // Data-parallel parameters are already identical; only BatchNorm statistics drift, and they
  // matter only for evaluation, so they are averaged before evaluating (and at the end).
  if (!recipe_.DataParallel() || plan.eval_after()) {
    if (absl::Status s = averager_->Average(*comm_); !s.ok()) return s;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  v1::RoundReport report;
  report.set_round(plan.round());
  report.set_start_step(plan.start_step());
  report.set_h(plan.h());
  report.set_train_loss(loss_sum / static_cast<double>(plan.h()));
  report.set_samples(plan.h() * recipe_.LocalBatchSize());
  report.set_seconds(seconds);
  report.set_bytes_sent(comm_->bytes_sent() - bytes_before);
  if (!recipe_.DataParallel() || plan.eval_after()) report.set_params_digest(ParamsDigest(*model_));
  reports_->AddRound(report);
  result_.rounds++;
  result_.steps = plan.start_step() + plan.h();
  if (absl::Now() - last_log_ >= kLogInterval) {
    last_log_ = absl::Now();
    LOG(INFO) << absl::StrFormat("rank %d: step %d/%d round %d H=%d lr=%.4g loss=%.4f %.0f samples/s",
                                 join_.rank(), result_.steps, recipe_.TotalSteps(), plan.round(),
                                 plan.h(), plan.lr(), report.train_loss(),
                                 report.samples() / std::max(seconds, 1e-9));
  }
  return absl::OkStatus();
}

absl::Status Worker::Evaluate(const v1::RoundPlan& plan) {
  // Each worker evaluates a disjoint slice of the test set; the sums are all-reduced, so every
  // worker computes the same accuracy.
  const int64_t n = test_.size();
  const int64_t begin = n * join_.rank() / join_.world_size();
  const int64_t end = n * (join_.rank() + 1) / join_.world_size();
  torch::Tensor sums = torch::zeros({3}, torch::TensorOptions().dtype(torch::kFloat32));
  absl::Status s = TorchCall("evaluation", [&] {
    torch::NoGradGuard no_grad;
    model_->eval();
    double loss = 0, correct = 0;
    for (int64_t i = begin; i < end; i += recipe_.eval_batch_size) {
      const int64_t j = std::min(end, i + recipe_.eval_batch_size);
      torch::Tensor logits = model_->forward(test_.images.slice(0, i, j).to(device_));
      torch::Tensor y = test_.labels.slice(0, i, j).to(device_);
      loss += torch::nn::functional::cross_entropy(
                  logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                  .item<double>();
      correct += logits.argmax(1).eq(y).sum().item<double>();
    }
    sums[0] = loss;
    sums[1] = correct;
    sums[2] = static_cast<double>(end - begin);
    model_->train();
    sums = sums.to(device_);
  });
  if (!s.ok()) return s;
  if (absl::Status s = comm_->AllReduceSum(sums); !s.ok()) return s;
  sums = sums.cpu();
  const double examples = sums[2].item<double>();
  v1::EvalReport eval;
  const int64_t step = plan.start_step() + plan.h();
  eval.set_step(step);
  eval.set_epoch(static_cast<double>(step) / recipe_.steps_per_epoch);
  eval.set_test_loss(sums[0].item<double>() / examples);
  eval.set_test_acc(sums[1].item<double>() / examples);
  eval.set_examples(static_cast<int64_t>(examples));
  result_.test_acc = eval.test_acc();
  if (join_.rank() == 0) {
    LOG(INFO) << absl::StrFormat("eval at step %d (epoch %.2f): test_acc=%.4f test_loss=%.4f", step,
                                 eval.epoch(), eval.test_acc(), eval.test_loss());
  }
  reports_->AddEval(eval);
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
  LOG(INFO) << "joined run " << join_.run_id() << " as rank " << join_.rank() << " of "
            << join_.world_size() << " (generation " << join_.generation() << ")";

  absl::Status status = Setup();
  int64_t next_round = join_.start_round();
  while (status.ok()) {
    v1::NextRoundsRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_rank(join_.rank());
    request.set_generation(join_.generation());
    request.set_next_round(next_round);
    absl::StatusOr<v1::NextRoundsReply> reply = client_->NextRounds(
        request, absl::Now() + absl::Milliseconds(join_.rendezvous_timeout_ms()) + absl::Seconds(10));
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
      if (status.ok() && plan.eval_after()) status = Evaluate(plan);
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
