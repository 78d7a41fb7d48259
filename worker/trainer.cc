#include "worker/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/heartbeater.h"
#include "client/report_sender.h"
#include "common/log_prefix.h"
#include "common/lr_schedule.h"
#include "common/recipe.h"
#include "glog/logging.h"
#include "worker/checkpoint.h"
#include "worker/checkpoint_writer.h"
#include "worker/clear_gradients.h"
#include "worker/comm/collective_fault_hook.h"
#include "worker/comm/communicator_factory.h"
#include "worker/comm/gradient_bucketer.h"
#include "worker/comm/model_averager.h"
#include "worker/data/batch_loader.h"
#include "worker/data/datasets.h"
#include "worker/evaluator.h"
#include "worker/model/memory_format.h"
#include "worker/model/models.h"
#include "worker/model/torchscript_model.h"
#include "worker/model_export.h"
#include "worker/optimizer_factory.h"
#include "worker/precision.h"
#include "worker/state_dict_import.h"
#include "worker/state_snapshot.h"
#include "worker/torch_call.h"
#include "worker/training_loss.h"

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

ModelAverager::SyncPrecision SyncPrecisionOf(const Recipe& recipe) {
  return recipe.sync_precision == "bf16" ? ModelAverager::SyncPrecision::kBfloat16
                                         : ModelAverager::SyncPrecision::kFloat32;
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
  // Once per process: recipe, data, model, optimizer, initial weights.
  absl::Status Setup();
  // Once per generation: communicator, rank 0's weights, data shard, reports, snapshot.
  absl::Status FormGroup();
  // Trains the generation's rounds; OK when the run has finished.
  absl::Status TrainGeneration();
  // After a failure that a new generation can recover from: returns to the last averaged state
  // and joins again. Sets *finished when the run ended meanwhile.
  absl::Status Regroup(const absl::Status& cause, bool* finished);
  bool Recoverable() const;
  bool ChannelsLast() const { return recipe_.memory_format == "channels_last"; }
  // Heartbeats for the generation just joined, from the moment it formed (setting up the data or
  // the communicator can take longer than the heartbeat timeout).
  void BeatFor(const v1::JoinReply& join) {
    heartbeater_->SetIdentity(
        options_.worker_id, join.rank(), join.generation(),
        absl::Milliseconds(join.heartbeat_interval_ms() > 0 ? join.heartbeat_interval_ms() : 1000));
  }
  void OnGenerationEnded(int64_t generation, const v1::Outcome& outcome);
  absl::Status TrainRound(const v1::RoundPlan& plan);
  absl::Status Evaluate(int64_t step);
  absl::Status AverageOptimizerState();
  // AdamW's moments' averager (avg_m / avg_v), created at the first sync after AdamW made its
  // state; null when they are not averaged (or not there yet).
  absl::StatusOr<ModelAverager*> Moments();
  // sync_overlap: start this round's sync of the model (and moments) in the background, finish
  // the one in flight (a no-op when none is), or forget it after the communicator was aborted.
  absl::Status StartOverlappedSync();
  absl::Status FinishOverlappedSync();
  void AbandonOverlappedSync();
  absl::Status LoadInitialState();
  absl::Status MaybeCheckpoint(const v1::RoundPlan& plan);
  std::string CheckpointDir() const;
  // Rank 0, once the run has finished: model.pt (and model.ts for a TorchScript model) in
  // CheckpointDir(), whatever save_freq is.
  absl::Status ExportFinalModel();
  void Leave(const std::string& error);

  CoordinatorClient* client_;
  TrainerOptions options_;
  CoordinatorStore store_;
  v1::JoinReply join_;
  Recipe recipe_;
  std::unique_ptr<LrSchedule> schedule_;
  std::shared_ptr<const DataSource> train_, test_;
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
  std::unique_ptr<Heartbeater> heartbeater_;
  StateSnapshot snapshot_;
  std::string run_id_;
  // Tells this process from an earlier one with the same worker id.
  const std::string incarnation_ = absl::StrCat(absl::Hex(absl::Uniform<uint64_t>(absl::BitGen())),
                                                "-", absl::ToUnixNanos(absl::Now()));
  int64_t bytes_before_comm_ = 0;  // sent by the communicators of earlier generations
  // sync_overlap: comm_'s bytes when the last round's report counted them (after a sync finished).
  int64_t overlap_bytes_mark_ = 0;
  // This generation's split of the global batch.
  int64_t local_batch_ = 0;
  int64_t accumulation_ = 1;
  // Set when NextRounds answered GENERATION_ENDED.
  bool generation_over_ = false;
  // The generation the heartbeat thread was told has ended.
  std::atomic<int64_t> ended_generation_{-1};
  // The communicator the heartbeat thread aborts when the coordinator ends its generation.
  absl::Mutex comm_mu_;
  Communicator* live_comm_ ABSL_GUARDED_BY(comm_mu_) = nullptr;
  int64_t live_generation_ ABSL_GUARDED_BY(comm_mu_) = -1;
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
  // Training: the dataset's augmentation (CIFAR: crop + flip; folders: RandomResizedCrop +
  // flip; with strong_aug then RandAugment); evaluation: none (folders: resize + centre crop).
  // Folders decode in the loaders.
  DataOptions data_options;
  data_options.image_size = recipe_.image_size;
  if (recipe_.strong_aug) {
    // RandAugment on the training images only (the authors' --strong-aug).
    data_options.rand_augment = RandAugmentOptions{static_cast<int>(recipe_.rand_aug_severity),
                                                   static_cast<int>(recipe_.rand_aug_depth)};
  }
  absl::StatusOr<std::shared_ptr<const DataSource>> train =
      OpenDataset(recipe_.dataset, data_dir, data_options);
  if (!train.ok()) return train.status();
  data_options.train = false;
  data_options.augment = false;
  data_options.rand_augment.reset();
  absl::StatusOr<std::shared_ptr<const DataSource>> test =
      OpenDataset(recipe_.dataset, data_dir, data_options);
  if (!test.ok()) return test.status();
  train_ = *train;
  test_ = *test;
  LOG(INFO) << "data: " << train_->Describe() << "; " << test_->Describe();

  torch::manual_seed(std::max<int64_t>(0, recipe_.init_model_by_seed));
  // The model's input follows the data: 1x28x28 for Fashion-MNIST, 3x32x32 for CIFAR,
  // 3 x image_size x image_size for folders.
  const std::vector<int64_t> shape = train_->example_shape();
  if (shape.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat("dataset ", recipe_.dataset, " has ",
                                                   shape.size(), "-d examples; want C x H x W"));
  }
  const ModelInput input{shape[0], shape[1], shape[2]};
  if (recipe_.model == "torchscript") {
    // The user's module: loaded, and checked on a small batch of the data's shape so a model that
    // does not fit the data fails here, before any training.
    const std::string path = options_.model_path.empty() ? recipe_.model_path : options_.model_path;
    absl::StatusOr<std::shared_ptr<TorchScriptModel>> scripted = TorchScriptModel::Load(path);
    if (!scripted.ok()) return scripted.status();
    if (absl::Status s = CheckScriptedOutput(
            **scripted, torch::zeros({2, shape[0], shape[1], shape[2]}), train_->num_classes());
        !s.ok()) {
      return s;
    }
    model_ = *scripted;
  } else {
    absl::StatusOr<std::shared_ptr<Model>> model =
        MakeModel(recipe_.model, train_->num_classes(), input);
    if (!model.ok()) return model.status();
    model_ = *model;
  }
  if (absl::Status s = TorchCall("moving the model", [&] { model_->to(device_); }); !s.ok()) {
    return s;
  }
  optimizer_ = MakeOptimizer(recipe_, *model_);
  if (absl::Status s = LoadInitialState(); !s.ok()) return s;
  // After loading (which may replace the tensors' storage with a checkpoint's layout), before the
  // averager binds the tensors' memory.
  if (ChannelsLast()) {
    if (absl::Status s = TorchCall("converting the model to channels_last",
                                   [&] { ConvertToChannelsLast(*model_); });
        !s.ok()) {
      return s;
    }
  }

  absl::StatusOr<ModelAverager> averager = ModelAverager::ForModule(*model_);
  if (!averager.ok()) return averager.status();
  averager_ = std::make_unique<ModelAverager>(std::move(*averager));
  averager_->set_sync_precision(SyncPrecisionOf(recipe_));
  return absl::OkStatus();
}

absl::Status Worker::FormGroup() {
  const int world = join_.world_size();
  if (world < 1 || join_.rank() < 0 || join_.rank() >= world) {
    return absl::InternalError(
        absl::StrCat("coordinator gave rank ", join_.rank(), " of ", world, " workers"));
  }
  // The global batch is split over this generation's workers (fewer workers after a failure
  // each take a larger share, in more micro-batches).
  local_batch_ = recipe_.total_batch_size / world;
  accumulation_ = std::max<int64_t>(
      1, (local_batch_ + recipe_.physical_batch_size - 1) / recipe_.physical_batch_size);

  // A fresh key prefix per generation and communicator keeps a re-formed group from reading a
  // previous group's addresses.
  PrefixStore scoped(absl::StrCat(join_.run_id(), "/g", join_.generation(), "/c0"), &store_);
  CommunicatorOptions comm_options;
  comm_options.hostname = options_.host;
  comm_options.timeout = absl::Milliseconds(join_.rendezvous_timeout_ms());
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateCommunicator(device_, &scoped, join_.rank(), world, comm_options);
  if (!comm.ok()) return comm.status();
  bucketer_.reset();  // it uses the previous generation's communicator
  {
    absl::MutexLock lock(&comm_mu_);
    if (comm_) bytes_before_comm_ += comm_->bytes_sent();
    comm_ = std::move(*comm);
    live_comm_ = comm_.get();
    live_generation_ = join_.generation();
  }
  // Rank 0 holds the most recent state (the coordinator ranks joiners so): everyone starts the
  // generation from its weights.
  if (absl::Status s = averager_->BroadcastFrom(*comm_, 0); !s.ok()) return s;
  // A generation that starts where the run resumed: every member loaded the checkpoint's AdamW
  // state, whose averaged moments are identical on all ranks (written after a sync). Broadcasting
  // them (a no-op on their values) makes them this communicator's bfloat16 reference, as the
  // uninterrupted run held it; otherwise the first sync after resuming would send float32 and
  // round differently from the run that was not interrupted. Every member decides this from the
  // same recipe and join, so all or none broadcast.
  if (recipe_.sync_precision == "bf16" && recipe_.resume_from_step > 0 &&
      !recipe_.optimizer_resume_pth.empty() && join_.start_step() == recipe_.resume_from_step) {
    absl::StatusOr<ModelAverager*> moments = Moments();
    if (!moments.ok()) return moments.status();
    if (*moments != nullptr) {
      if (absl::Status s = (*moments)->BroadcastFrom(*comm_, 0); !s.ok()) return s;
    }
  }
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
  sampler.world = world;
  sampler.local_batch = local_batch_;
  sampler.steps_per_epoch = recipe_.steps_per_epoch;
  LoaderOptions loader_options;
  loader_options.num_workers = static_cast<int>(std::max<int64_t>(1, recipe_.nw));
  loader_options.augment_seed = static_cast<uint64_t>(recipe_.seed);
  loader_options.start_step = join_.start_step();
  loader_.reset();
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(train_, sampler, loader_options);
  if (!loader.ok()) return loader.status();
  loader_ = std::move(*loader);

  v1::ReportRequest identity;
  identity.set_worker_id(options_.worker_id);
  identity.set_rank(join_.rank());
  identity.set_generation(join_.generation());
  reports_ = std::make_unique<ReportSender>(client_, identity);
  overlap_bytes_mark_ = comm_->bytes_sent();
  return snapshot_.Capture(*model_, *optimizer_, join_.start_round());
}

absl::Status Worker::TrainRound(const v1::RoundPlan& plan) {
  const absl::Time start = absl::Now();
  const int64_t bytes_before = comm_->bytes_sent();
  const int64_t acc = accumulation_;
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
  if (plan.data_parallel()) {
    // Its gradients use the communicator synchronously (never pending in practice: data-parallel
    // rounds come before local ones).
    if (absl::Status s = FinishOverlappedSync(); !s.ok()) return s;
  }
  // sync_overlap: the step before which the previous round's sync is applied. Applying it as
  // soon as it arrived would depend on the link's timing; a fixed step keeps runs reproducible.
  const int64_t apply_at =
      plan.start_step() +
      std::clamp<int64_t>(static_cast<int64_t>(std::ceil(recipe_.sync_overlap * plan.h())), 1,
                          plan.h());
  model_->train();
  for (int64_t t = plan.start_step(); t < plan.start_step() + plan.h(); ++t) {
    if (t == apply_at && recipe_.sync_overlap > 0) {
      if (absl::Status s = FinishOverlappedSync(); !s.ok()) return s;
    }
    if (ended_generation_.load() == join_.generation()) {
      return absl::AbortedError("the coordinator ended this generation");
    }
    absl::StatusOr<Batch> batch = loader_->Next();
    if (!batch.ok()) return batch.status();
    if (batch->step != t) {
      return absl::InternalError(
          absl::StrCat("data loader is at step ", batch->step, ", the round at step ", t));
    }
    SetLearningRate(*optimizer_, schedule_->At(t));
    absl::Status s = TorchCall("training step", [&] {
      torch::manual_seed(ModelRngSeed(static_cast<uint64_t>(recipe_.seed), t, join_.rank()));
      ClearGradients(*optimizer_);
      std::vector<torch::Tensor> xs = batch->x.to(device_, /*non_blocking=*/true).chunk(acc);
      if (ChannelsLast()) {
        for (torch::Tensor& x : xs) {
          if (x.dim() == 4) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
        }
      }
      std::vector<torch::Tensor> ys = batch->y.to(device_, /*non_blocking=*/true).chunk(acc);
      for (size_t i = 0; i < xs.size(); ++i) {
        torch::Tensor loss;
        {
          AutocastScope autocast(recipe_.precision == "bf16", device_.type());
          loss = TrainingLoss(*model_, xs[i], ys[i], {recipe_.label_smoothing, recipe_.mixup_alpha},
                              MixupSeed(static_cast<uint64_t>(recipe_.seed), t, join_.rank(), acc,
                                        static_cast<int64_t>(i)));
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
  // Whether every member holds the same state when this round ends.
  bool synced = false;
  // What this round's report says it sent; set below where overlapped syncs count differently.
  std::optional<int64_t> round_bytes;
  if (!plan.data_parallel() && recipe_.sync_overlap > 0) {
    // The previous round's sync has travelled while this round trained (applied above, or now
    // when sync_overlap is 1): send this round's, and train on. Evaluation and checkpoints need
    // the averaged model, so those rounds (the last one among them) wait for their own sync.
    // A sync's bytes are counted once it finished, and so in the round that finished it: the
    // same round on every member, whenever the collective completed in the background.
    if (absl::Status s = FinishOverlappedSync(); !s.ok()) return s;
    int64_t counted = comm_->bytes_sent();
    if (absl::Status s = StartOverlappedSync(); !s.ok()) return s;
    if (plan.eval_after() || plan.checkpoint_after()) {
      if (absl::Status s = FinishOverlappedSync(); !s.ok()) return s;
      counted = comm_->bytes_sent();
      synced = true;
    }
    round_bytes = counted - overlap_bytes_mark_;
    overlap_bytes_mark_ = counted;
  } else if (!plan.data_parallel() || plan.eval_after()) {
    // Data-parallel parameters are already identical; only BatchNorm statistics drift, and they
    // matter only for evaluation, so they are averaged before evaluating (and at the end).
    if (plan.round() == CollectiveFaultHook::KillRound()) CollectiveFaultHook::Arm();
    if (absl::Status s = averager_->Average(*comm_); !s.ok()) return s;
    if (!plan.data_parallel()) {
      if (absl::Status s = AverageOptimizerState(); !s.ok()) return s;
    }
    synced = true;
  }
  double train_loss = 0;
  if (absl::Status s = TorchCall("reading the loss", [&] { train_loss = loss_sum.item<double>(); });
      !s.ok()) {
    return s;
  }
  // The point to return to if the group fails: the averaged state every member holds, or with
  // sync_overlap this member's own (the next group starts from rank 0's in any case).
  if (absl::Status s = snapshot_.Capture(*model_, *optimizer_, plan.round() + 1); !s.ok()) {
    return s;
  }
  heartbeater_->SetStep(plan.start_step() + plan.h());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  v1::RoundReport report;
  report.set_round(plan.round());
  report.set_start_step(plan.start_step());
  report.set_h(plan.h());
  report.set_train_loss(train_loss / static_cast<double>(plan.h()));
  report.set_samples(plan.h() * local_batch_);
  report.set_seconds(seconds);
  report.set_bytes_sent(round_bytes.value_or(comm_->bytes_sent() - bytes_before));
  if (synced) report.set_params_digest(ParamsDigest(*model_));
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
        static_cast<uint64_t>(recipe_.seed) * 1000003u + static_cast<uint64_t>(step) * 31u,
        join_.rank(), join_.world_size(), device_,
        static_cast<int>(std::max<int64_t>(1, recipe_.nw)));
    if (!layers.ok()) return layers.status();
    if (*layers > 0) {
      if (absl::Status s = averager_->Average(*comm_); !s.ok()) return s;
    }
  }
  absl::StatusOr<EvalResult> r =
      qsr::Evaluate(*model_, test_, *comm_, device_, recipe_.eval_batch_size,
                    static_cast<int>(std::max<int64_t>(1, recipe_.nw)));
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
  return absl::OkStatus();
}

absl::StatusOr<ModelAverager*> Worker::Moments() {
  if (!recipe_.avg_m && !recipe_.avg_v) return nullptr;
  if (moments_ == nullptr) {
    // AdamW creates its state at the first step; from then on the tensors are updated in place.
    std::vector<torch::Tensor> moments =
        AdamMoments(*optimizer_, model_->parameters(), recipe_.avg_m, recipe_.avg_v);
    if (moments.empty()) return nullptr;
    absl::StatusOr<ModelAverager> averager = ModelAverager::Create(moments);
    if (!averager.ok()) return averager.status();
    moments_ = std::make_unique<ModelAverager>(std::move(*averager));
    moments_->set_sync_precision(SyncPrecisionOf(recipe_));
  }
  return moments_.get();
}

absl::Status Worker::AverageOptimizerState() {
  absl::StatusOr<ModelAverager*> moments = Moments();
  if (!moments.ok()) return moments.status();
  return *moments == nullptr ? absl::OkStatus() : (*moments)->Average(*comm_);
}

absl::Status Worker::StartOverlappedSync() {
  if (absl::Status s = averager_->StartAverage(*comm_); !s.ok()) return s;
  absl::StatusOr<ModelAverager*> moments = Moments();
  if (!moments.ok()) return moments.status();
  return *moments == nullptr ? absl::OkStatus() : (*moments)->StartAverage(*comm_);
}

absl::Status Worker::FinishOverlappedSync() {
  if (averager_ == nullptr) return absl::OkStatus();
  absl::Status status = averager_->FinishAverage();
  if (moments_ != nullptr) status.Update(moments_->FinishAverage());
  return status;
}

void Worker::AbandonOverlappedSync() {
  if (averager_ != nullptr) averager_->AbandonAverage();
  if (moments_ != nullptr) moments_->AbandonAverage();
}

std::string Worker::CheckpointDir() const {
  if (!options_.checkpoint_dir.empty()) return options_.checkpoint_dir;
  if (!recipe_.checkpoint_dir.empty()) return recipe_.checkpoint_dir;
  return absl::StrCat("runs/", join_.run_id(), "/checkpoints");
}

absl::Status Worker::ExportFinalModel() {
  if (join_.rank() != 0 || model_ == nullptr) return absl::OkStatus();
  const std::string dir = CheckpointDir();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return absl::PermissionDeniedError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  const std::string state_dict = absl::StrCat(dir, "/", kStateDictName);
  if (absl::Status s = SavePyTorchStateDict(*model_, state_dict); !s.ok()) return s;
  LOG(INFO) << "final model: " << state_dict;
  if (const auto* scripted = dynamic_cast<const TorchScriptModel*>(model_.get())) {
    const std::string ts = absl::StrCat(dir, "/", kScriptedModuleName);
    if (absl::Status s = SaveScriptedModule(*scripted, ts); !s.ok()) return s;
    LOG(INFO) << "final scripted model: " << ts;
  }
  return absl::OkStatus();
}

absl::Status Worker::LoadInitialState() {
  // Identical starting weights on every worker come from the seed, or from one file.
  if (recipe_.init_model_by_seed == -1) {
    if (absl::Status s = LoadInitialWeights(*model_, recipe_.init_model_path); !s.ok()) return s;
  }
  if (!recipe_.resume_pth.empty()) {
    if (absl::Status s = LoadModule(*model_, recipe_.resume_pth); !s.ok()) return s;
  }
  if (!recipe_.optimizer_resume_pth.empty()) {
    // A folder holds each rank's state (local methods), a file the one shared state.
    std::error_code ec;
    const std::string path =
        std::filesystem::is_directory(recipe_.optimizer_resume_pth, ec)
            ? absl::StrCat(recipe_.optimizer_resume_pth, "/rank=", join_.rank(), ".pt")
            : recipe_.optimizer_resume_pth;
    if (absl::Status s = LoadOptimizer(*optimizer_, path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Worker::MaybeCheckpoint(const v1::RoundPlan& plan) {
  // The coordinator decides (every save_freq epochs and at the end of the run).
  if (!plan.checkpoint_after()) return absl::OkStatus();
  const int64_t spe = recipe_.steps_per_epoch;
  const int64_t step = plan.start_step() + plan.h();
  CheckpointPoint point;
  point.dir = CheckpointDir();
  point.step = step;
  point.epoch = step / spe;
  point.round = plan.round();
  point.h = plan.h();
  point.recipe_yaml = join_.recipe_yaml();
  point.save_optimizer = recipe_.save_opt;
  point.per_rank = recipe_.multiple_optimizers || !recipe_.DataParallel();
  absl::StatusOr<WrittenCheckpoint> written =
      WriteCheckpoint(*model_, *optimizer_, *comm_, device_, point);
  if (!written.ok()) return written.status();
  if (join_.rank() == 0) {
    v1::CheckpointReport report;
    report.set_step(step);
    report.set_round(plan.round());
    report.set_manifest(written->manifest_path);
    report.set_bytes(written->bytes);
    reports_->AddCheckpoint(report);
    LOG(INFO) << "checkpoint committed: " << written->manifest_path << " (" << written->bytes
              << " bytes)";
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

void Worker::OnGenerationEnded(int64_t generation, const v1::Outcome& outcome) {
  if (outcome.code() == v1::Outcome::RUN_FINISHED) return;  // the barrier says so in order
  LOG(WARNING) << "coordinator: generation " << generation << " is over: " << outcome.message();
  ended_generation_.store(generation);
  // A collective with a dead or stopped peer would otherwise wait for its timeout.
  absl::MutexLock lock(&comm_mu_);
  if (live_comm_ != nullptr && live_generation_ == generation) {
    live_comm_->Abort("the coordinator ended generation " + std::to_string(generation) + ": " +
                      outcome.message());
  }
}

bool Worker::Recoverable() const {
  // The coordinator ended the generation, or a collective failed (a peer died or was aborted):
  // a new generation can go on. Any other error is this worker's own.
  return generation_over_ || ended_generation_.load() == join_.generation() ||
         (comm_ != nullptr && comm_->aborted());
}

absl::Status Worker::TrainGeneration() {
  int64_t next_round = join_.start_round();
  // Transport errors (a coordinator restarting) are retried for this long.
  constexpr absl::Duration kReconnect = absl::Minutes(2);
  absl::Time unreachable_since = absl::InfiniteFuture();
  while (true) {
    v1::NextRoundsRequest request;
    request.set_worker_id(options_.worker_id);
    request.set_rank(join_.rank());
    request.set_generation(join_.generation());
    request.set_next_round(next_round);
    absl::StatusOr<v1::NextRoundsReply> reply = client_->NextRounds(
        request,
        absl::Now() + absl::Milliseconds(join_.rendezvous_timeout_ms()) + absl::Seconds(30));
    if (!reply.ok()) {
      const bool transient =
          absl::IsUnavailable(reply.status()) || absl::IsDeadlineExceeded(reply.status());
      if (!transient) return reply.status();
      if (unreachable_since == absl::InfiniteFuture()) unreachable_since = absl::Now();
      if (absl::Now() - unreachable_since > kReconnect) return reply.status();
      if (ended_generation_.load() == join_.generation()) {
        generation_over_ = true;
        return absl::AbortedError("the coordinator ended this generation");
      }
      LOG(WARNING) << "NextRounds: " << reply.status() << "; retrying";
      absl::SleepFor(absl::Milliseconds(500));
      continue;
    }
    unreachable_since = absl::InfiniteFuture();
    switch (reply->outcome().code()) {
      case v1::Outcome::OK:
        break;
      case v1::Outcome::RUN_FINISHED:
        // Stopped by the operator after a round whose sync is still in flight: every member
        // was told the same, after the same round, so each can complete it.
        if (absl::Status s = FinishOverlappedSync(); !s.ok()) {
          LOG(WARNING) << "the last overlapped sync did not complete; this worker ends with its "
                          "own model: "
                       << s;
        }
        return absl::OkStatus();
      case v1::Outcome::TIMEOUT:
        continue;  // superseded or timed out on the coordinator's side: ask again
      case v1::Outcome::GENERATION_ENDED:
        generation_over_ = true;
        return absl::AbortedError(reply->outcome().message());
      default:
        return absl::AbortedError(reply->outcome().message());
    }
    for (const v1::RoundPlan& plan : reply->rounds()) {
      absl::Status status = TrainRound(plan);
      if (status.ok() && plan.eval_after()) status = Evaluate(plan.start_step() + plan.h());
      if (status.ok()) status = MaybeCheckpoint(plan);
      if (!status.ok()) return status;
      next_round = plan.round() + 1;
    }
  }
}

absl::Status Worker::Regroup(const absl::Status& cause, bool* finished) {
  const int64_t generation = join_.generation();
  // Did the coordinator end it, or is this worker the first to know that a peer is gone?
  const bool told = generation_over_ || ended_generation_.load() == generation;
  LOG(WARNING) << "rank " << join_.rank() << " leaves generation " << generation << ": " << cause;
  {
    absl::MutexLock lock(&comm_mu_);
    if (comm_) comm_->Abort(std::string(cause.message()));
    live_comm_ = nullptr;
  }
  bucketer_.reset();  // removes its hooks; its collectives fail fast on the aborted communicator
  AbandonOverlappedSync();
  // Reports of the rounds this group finished still count: deliver them before joining again.
  if (reports_) {
    if (absl::Status s = reports_->Flush(absl::Now() + absl::Seconds(10)); !s.ok()) {
      LOG(WARNING) << "some reports of generation " << generation << " were not delivered: " << s;
    }
  }
  loader_.reset();
  if (absl::Status s = snapshot_.Restore(*model_, *optimizer_); !s.ok()) return s;
  v1::JoinRequest join;
  join.set_worker_id(options_.worker_id);
  join.set_host(options_.host);
  join.set_device(options_.device);
  join.set_incarnation(incarnation_);
  join.set_next_round(snapshot_.next_round());
  if (!told) {
    join.set_failed_generation(generation);
    join.set_failure(std::string(cause.message()).substr(0, 1024));
  }
  absl::StatusOr<v1::JoinReply> joined = JoinWithRetry(client_, join, options_.regroup_timeout);
  if (!joined.ok()) return joined.status();
  switch (joined->outcome().code()) {
    case v1::Outcome::OK:
      break;
    case v1::Outcome::RUN_FINISHED:
      *finished = true;
      return absl::OkStatus();
    default:
      return absl::AbortedError("could not join the run again: " + joined->outcome().message());
  }
  if (joined->run_id() != run_id_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the coordinator now serves run ", joined->run_id(), ", not ", run_id_));
  }
  join_ = *joined;
  BeatFor(join_);
  generation_over_ = false;
  result_.rank = join_.rank();
  ++result_.regroups;
  SetLogContext(join_.run_id(), absl::StrCat(join_.rank()));
  LOG(INFO) << "joined generation " << join_.generation() << " as rank " << join_.rank() << " of "
            << join_.world_size() << "; resuming at round " << join_.start_round() << " (step "
            << join_.start_step() << ")";
  return absl::OkStatus();
}

absl::StatusOr<TrainerResult> Worker::Run() {
  v1::JoinRequest join;
  join.set_worker_id(options_.worker_id);
  join.set_host(options_.host);
  join.set_device(options_.device);
  join.set_incarnation(incarnation_);
  absl::StatusOr<v1::JoinReply> joined = JoinWithRetry(client_, join, options_.connect_timeout);
  if (!joined.ok()) return joined.status();
  if (joined->outcome().code() != v1::Outcome::OK) {
    return absl::FailedPreconditionError("coordinator refused to admit this worker: " +
                                         joined->outcome().message());
  }
  join_ = *joined;
  run_id_ = join_.run_id();
  result_.rank = join_.rank();
  SetLogContext(join_.run_id(), absl::StrCat(join_.rank()));
  LOG(INFO) << "joined run " << join_.run_id() << " as rank " << join_.rank() << " of "
            << join_.world_size() << " (generation " << join_.generation() << ")";
  heartbeater_ = std::make_unique<Heartbeater>(
      client_, [this](int64_t generation, const v1::Outcome& outcome) {
        OnGenerationEnded(generation, outcome);
      });
  BeatFor(join_);

  absl::Status status = Setup();
  bool first = true;
  while (status.ok()) {
    status = FormGroup();
    if (status.ok() && first && recipe_.eval_on_start) status = Evaluate(join_.start_step());
    first = false;
    if (status.ok()) status = TrainGeneration();
    if (status.ok() || !Recoverable()) break;
    // A failure the group can survive: return to the last averaged state and re-form.
    bool finished = false;
    status = Regroup(status, &finished);
    if (finished) break;
  }
  if (status.ok()) status = ExportFinalModel();
  heartbeater_->Stop();
  if (!status.ok()) {
    LOG(ERROR) << "rank " << join_.rank() << ": " << status;
    if (comm_) comm_->Abort(std::string(status.message()));
  }
  if (model_) result_.params_hash = ParamsDigest(*model_);
  if (comm_) result_.bytes_sent = bytes_before_comm_ + comm_->bytes_sent();
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
