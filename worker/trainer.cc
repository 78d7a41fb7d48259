#include "worker/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/report_sender.h"
#include "logging/log_prefix.h"
#include "common/lr_schedule.h"
#include "common/recipe.h"
#include "glog/logging.h"
#include "worker/checkpoint.h"
#include "worker/checkpoint_writer.h"
#include "worker/clear_gradients.h"
#include "worker/comm/communicator_factory.h"
#include "worker/data/batch_loader.h"
#include "worker/evaluator.h"
#include "worker/joined_group.h"
#include "worker/model/memory_format.h"
#include "worker/model/models.h"
#include "worker/model/torchscript_model.h"
#include "worker/model_export.h"
#include "worker/model_snapshotter.h"
#include "worker/optimizer_factory.h"
#include "worker/params_digest.h"
#include "worker/precision.h"
#include "worker/round_sync.h"
#include "worker/state_snapshot.h"
#include "worker/torch_call.h"
#include "worker/training_loss.h"
#include "worker/training_setup.h"

namespace qsr {
namespace {

// How often a worker logs its own progress.
constexpr absl::Duration kLogInterval = absl::Seconds(15);

class Worker {
 public:
  Worker(CoordinatorClient* client, const TrainerOptions& options)
      : client_(client),
        options_(options),
        group_(client, GroupMember{options.worker_id, options.host, options.device}) {}

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
  const v1::JoinReply& join() const { return group_.join(); }
  absl::Status TrainRound(const v1::RoundPlan& plan);
  // One optimizer step (all its micro-batches); adds the step's mean loss to `loss_sum`.
  absl::Status TrainStep(const v1::RoundPlan& plan, int64_t step, torch::Tensor& loss_sum);
  void ReportRound(const v1::RoundPlan& plan, double loss_sum, const RoundSyncResult& sync,
                   absl::Duration took);
  absl::Status Evaluate(int64_t step);
  absl::Status MaybeCheckpoint(const v1::RoundPlan& plan);
  std::string CheckpointDir() const;
  // Rank 0, once the run has finished: model.pt (and model.ts for a TorchScript model) in
  // CheckpointDir(), whatever save_freq is.
  absl::Status ExportFinalModel();
  void Leave(const std::string& error);

  CoordinatorClient* client_;
  TrainerOptions options_;
  Recipe recipe_;
  std::unique_ptr<LrSchedule> schedule_;
  TrainingData data_;
  std::shared_ptr<Model> model_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<Communicator> comm_;
  // Declared after comm_, which it watches: its heartbeat thread stops first.
  JoinedGroup group_;
  // Averaging and gradients over comm_; ends its use of a communicator before comm_ changes.
  std::unique_ptr<RoundSync> sync_;
  std::unique_ptr<BatchLoader> loader_;
  std::unique_ptr<ReportSender> reports_;
  StateSnapshot snapshot_;
  // Rank 0's weight snapshots for time-to-accuracy curves (null: none).
  std::unique_ptr<ModelSnapshotter> snapshots_;
  // This generation's split of the global batch.
  int64_t local_batch_ = 0;
  int64_t accumulation_ = 1;
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
  absl::StatusOr<Recipe> recipe = ParseRecipeYaml(join().recipe_yaml(), "coordinator recipe");
  if (!recipe.ok()) return recipe.status();
  recipe_ = *recipe;
  if (absl::Status s = ResolveRecipe(recipe_); !s.ok()) return s;
  if (absl::Status s = CheckPrecision(recipe_.precision, device_); !s.ok()) return s;
  schedule_ = std::make_unique<LrSchedule>(recipe_);
  absl::StatusOr<TrainingData> data =
      OpenTrainingData(recipe_, options_.data_dir.empty() ? recipe_.data_dir : options_.data_dir);
  if (!data.ok()) return data.status();
  data_ = *data;

  torch::manual_seed(std::max<int64_t>(0, recipe_.init_model_by_seed));
  absl::StatusOr<std::shared_ptr<Model>> model =
      BuildModel(recipe_, *data_.train,
                 options_.model_path.empty() ? recipe_.model_path : options_.model_path);
  if (!model.ok()) return model.status();
  model_ = *model;
  if (absl::Status s = TorchCall("moving the model", [&] { model_->to(device_); }); !s.ok()) {
    return s;
  }
  optimizer_ = MakeOptimizer(recipe_, *model_);
  if (absl::Status s = LoadInitialState(recipe_, join().rank(), *model_, *optimizer_); !s.ok()) {
    return s;
  }
  // After loading (which may replace the tensors' storage with a checkpoint's layout), before the
  // averager binds the tensors' memory.
  if (ChannelsLast()) {
    if (absl::Status s = TorchCall("converting the model to channels_last",
                                   [&] { ConvertToChannelsLast(*model_); });
        !s.ok()) {
      return s;
    }
  }
  RoundSyncOptions sync;
  sync.bf16_sync = recipe_.sync_precision == "bf16";
  sync.sync_overlap = recipe_.sync_overlap;
  sync.avg_m = recipe_.avg_m;
  sync.avg_v = recipe_.avg_v;
  if (recipe_.bucket_mb > 0) {
    sync.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(recipe_.bucket_mb * (1 << 20)));
  }
  absl::StatusOr<std::unique_ptr<RoundSync>> made = RoundSync::Create(*model_, *optimizer_, sync);
  if (!made.ok()) return made.status();
  sync_ = std::move(*made);
  if (options_.snapshot_dir.empty() || join().rank() != 0) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<ModelSnapshotter>> snapshots = ModelSnapshotter::Create(
      {options_.snapshot_dir, options_.snapshot_every, recipe_.steps_per_epoch});
  if (!snapshots.ok()) return snapshots.status();
  snapshots_ = std::move(*snapshots);
  return absl::OkStatus();
}

absl::Status Worker::FormGroup() {
  const int world = join().world_size();
  if (world < 1 || join().rank() < 0 || join().rank() >= world) {
    return absl::InternalError(
        absl::StrCat("coordinator gave rank ", join().rank(), " of ", world, " workers"));
  }
  // The global batch is split over this generation's workers (fewer workers after a failure
  // each take a larger share, in more micro-batches).
  local_batch_ = recipe_.total_batch_size / world;
  accumulation_ = std::max<int64_t>(
      1, (local_batch_ + recipe_.physical_batch_size - 1) / recipe_.physical_batch_size);

  // A fresh key prefix per generation and communicator keeps a re-formed group from reading a
  // previous group's addresses.
  std::unique_ptr<Store> rendezvous = group_.RendezvousStore();
  CommunicatorOptions comm_options;
  comm_options.hostname = options_.host;
  comm_options.timeout = absl::Milliseconds(join().rendezvous_timeout_ms());
  absl::StatusOr<std::unique_ptr<Communicator>> comm =
      CreateCommunicator(device_, rendezvous.get(), join().rank(), world, comm_options);
  if (!comm.ok()) return comm.status();
  sync_->EndGeneration();  // it uses the previous generation's communicator
  group_.Watch(nullptr);
  comm_ = std::move(*comm);
  group_.Watch(comm_.get());
  // A generation that starts where the run resumed: every member loaded the checkpoint's AdamW
  // state, whose averaged moments are identical on all ranks (written after a sync). Broadcasting
  // them (a no-op on their values) makes them this communicator's bfloat16 reference, as the
  // uninterrupted run held it; otherwise the first sync after resuming would send float32 and
  // round differently from the run that was not interrupted. Every member decides this from the
  // same recipe and join, so all or none broadcast.
  const bool broadcast_moments = recipe_.sync_precision == "bf16" && recipe_.resume_from_step > 0 &&
                                 !recipe_.optimizer_resume_pth.empty() &&
                                 join().start_step() == recipe_.resume_from_step;
  // Rank 0 holds the most recent state (the coordinator ranks joiners so): everyone starts the
  // generation from its weights.
  if (absl::Status s = sync_->BeginGeneration(
          comm_.get(), broadcast_moments, recipe_.DataParallel() || recipe_.post_local_epoch > 0);
      !s.ok()) {
    return s;
  }

  SamplerConfig sampler;
  sampler.seed = static_cast<uint64_t>(recipe_.seed);
  sampler.rank = join().rank();
  sampler.world = world;
  sampler.local_batch = local_batch_;
  sampler.steps_per_epoch = recipe_.steps_per_epoch;
  LoaderOptions loader_options;
  loader_options.num_workers = static_cast<int>(std::max<int64_t>(1, recipe_.nw));
  loader_options.augment_seed = static_cast<uint64_t>(recipe_.seed);
  loader_options.start_step = join().start_step();
  loader_.reset();
  absl::StatusOr<std::unique_ptr<BatchLoader>> loader =
      BatchLoader::Create(data_.train, sampler, loader_options);
  if (!loader.ok()) return loader.status();
  loader_ = std::move(*loader);

  reports_ = std::make_unique<ReportSender>(client_, group_.ReportIdentity());
  return snapshot_.Capture(*model_, *optimizer_, join().start_round());
}

absl::Status Worker::TrainRound(const v1::RoundPlan& plan) {
  const absl::Time start = absl::Now();
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
    if (absl::Status s = sync_->BeginStep(plan, t); !s.ok()) return s;
    if (group_.ended()) return absl::AbortedError("the coordinator ended this generation");
    if (absl::Status s = TrainStep(plan, t, loss_sum); !s.ok()) return s;
  }
  absl::StatusOr<RoundSyncResult> synced = sync_->EndRound(plan);
  if (!synced.ok()) return synced.status();
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
  group_.SetStep(plan.start_step() + plan.h());
  ReportRound(plan, train_loss, *synced, absl::Now() - start);
  return absl::OkStatus();
}

absl::Status Worker::TrainStep(const v1::RoundPlan& plan, int64_t t, torch::Tensor& loss_sum) {
  absl::StatusOr<Batch> batch = loader_->Next();
  if (!batch.ok()) return batch.status();
  if (batch->step != t) {
    return absl::InternalError(
        absl::StrCat("data loader is at step ", batch->step, ", the round at step ", t));
  }
  SetLearningRate(*optimizer_, schedule_->At(t));
  const int64_t acc = accumulation_;
  absl::Status s = TorchCall("training step", [&] {
    torch::manual_seed(ModelRngSeed(static_cast<uint64_t>(recipe_.seed), t, join().rank()));
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
                            MixupSeed(static_cast<uint64_t>(recipe_.seed), t, join().rank(), acc,
                                      static_cast<int64_t>(i)));
      }
      // Only the last micro-batch's backward sends gradients (the earlier ones accumulate).
      if (i + 1 == xs.size()) sync_->ArmGradients(plan);
      (loss / static_cast<double>(acc)).backward();
      loss_sum.add_(loss.detach(), 1.0 / static_cast<double>(acc));
    }
  });
  if (!s.ok()) return s;
  if (absl::Status s = sync_->SyncGradients(plan); !s.ok()) return s;
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
  return TorchCall("optimizer step", [&] { optimizer_->step(); });
}

void Worker::ReportRound(const v1::RoundPlan& plan, double loss_sum, const RoundSyncResult& sync,
                         absl::Duration took) {
  const double seconds = absl::ToDoubleSeconds(took);
  v1::RoundReport report;
  report.set_round(plan.round());
  report.set_start_step(plan.start_step());
  report.set_h(plan.h());
  report.set_train_loss(loss_sum / static_cast<double>(plan.h()));
  report.set_samples(plan.h() * local_batch_);
  report.set_seconds(seconds);
  report.set_bytes_sent(sync.bytes_sent);
  if (sync.synced) report.set_params_digest(ParamsDigest(*model_));
  reports_->AddRound(report);
  result_.rounds++;
  result_.steps = plan.start_step() + plan.h();
  if (absl::Now() - last_log_ >= kLogInterval) {
    last_log_ = absl::Now();
    LOG(INFO) << absl::StrFormat(
        "rank %d: step %d/%d round %d H=%d lr=%.4g loss=%.4f %.0f samples/s", join().rank(),
        result_.steps, recipe_.TotalSteps(), plan.round(), plan.h(), plan.lr(), report.train_loss(),
        report.samples() / std::max(seconds, 1e-9));
  }
}

absl::Status Worker::Evaluate(int64_t step) {
  ModelSnapshotter::Paused paused(snapshots_.get());  // the curve's clock counts training only
  if (recipe_.bn) {
    // Spread the re-estimation batches over the workers, then average the statistics.
    const int64_t batches = (recipe_.bn_batches + join().world_size() - 1) / join().world_size();
    absl::StatusOr<int> layers = ReestimateBatchNorm(
        *model_, data_.train, batches, recipe_.physical_batch_size,
        static_cast<uint64_t>(recipe_.seed) * 1000003u + static_cast<uint64_t>(step) * 31u,
        join().rank(), join().world_size(), device_,
        static_cast<int>(std::max<int64_t>(1, recipe_.nw)));
    if (!layers.ok()) return layers.status();
    if (*layers > 0) {
      if (absl::Status s = sync_->AverageModel(); !s.ok()) return s;
    }
  }
  absl::StatusOr<EvalResult> r =
      qsr::Evaluate(*model_, data_.test, *comm_, device_, recipe_.eval_batch_size,
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
  if (join().rank() == 0) {
    LOG(INFO) << absl::StrFormat(
        "eval at step %d (epoch %.2f): test_acc=%.4f top5=%.4f test_loss=%.4f", step, eval.epoch(),
        eval.test_acc(), r->acc5, eval.test_loss());
  }
  reports_->AddEval(eval);
  return absl::OkStatus();
}

std::string Worker::CheckpointDir() const {
  if (!options_.checkpoint_dir.empty()) return options_.checkpoint_dir;
  if (!recipe_.checkpoint_dir.empty()) return recipe_.checkpoint_dir;
  return absl::StrCat("runs/", join().run_id(), "/checkpoints");
}

absl::Status Worker::ExportFinalModel() {
  if (join().rank() != 0 || model_ == nullptr) return absl::OkStatus();
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
  point.recipe_yaml = join().recipe_yaml();
  point.save_optimizer = recipe_.save_opt;
  point.per_rank = recipe_.multiple_optimizers || !recipe_.DataParallel();
  absl::StatusOr<WrittenCheckpoint> written =
      WriteCheckpoint(*model_, *optimizer_, *comm_, device_, point);
  if (!written.ok()) return written.status();
  if (join().rank() == 0) {
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
  if (absl::Status s = group_.Leave(error); !s.ok()) LOG(WARNING) << "leave: " << s;
}

bool Worker::Recoverable() const {
  // The coordinator ended the generation, or a collective failed (a peer died or was aborted):
  // a new generation can go on. Any other error is this worker's own.
  return group_.ended() || (comm_ != nullptr && comm_->aborted());
}

absl::Status Worker::TrainGeneration() {
  int64_t next_round = join().start_round();
  const bool snap = snapshots_ != nullptr && join().rank() == 0;
  if (snap) {
    if (absl::Status s = snapshots_->Begin(join().start_step(), *model_); !s.ok()) return s;
  }
  while (true) {
    absl::StatusOr<v1::NextRoundsReply> reply = group_.NextRounds(next_round);
    if (!reply.ok()) return reply.status();
    switch (reply->outcome().code()) {
      case v1::Outcome::OK:
        break;
      case v1::Outcome::RUN_FINISHED:
        // Stopped by the operator after a round whose sync is still in flight: every member
        // was told the same, after the same round, so each can complete it.
        if (absl::Status s = sync_->Finish(); !s.ok()) {
          LOG(WARNING) << "the last overlapped sync did not complete; this worker ends with its "
                          "own model: "
                       << s;
        }
        return absl::OkStatus();
      case v1::Outcome::TIMEOUT:
        continue;  // superseded or timed out on the coordinator's side: ask again
      default:     // GENERATION_ENDED (which the group notes), or the run failed
        return absl::AbortedError(reply->outcome().message());
    }
    for (const v1::RoundPlan& plan : reply->rounds()) {
      absl::Status status = TrainRound(plan);
      if (status.ok() && snap)
        status = snapshots_->AfterSync(plan.start_step() + plan.h(), *model_);
      if (status.ok() && plan.eval_after()) status = Evaluate(plan.start_step() + plan.h());
      if (status.ok()) status = MaybeCheckpoint(plan);
      if (!status.ok()) return status;
      next_round = plan.round() + 1;
    }
  }
}

absl::Status Worker::Regroup(const absl::Status& cause, bool* finished) {
  const int64_t generation = join().generation();
  // Did the coordinator end it, or is this worker the first to know that a peer is gone?
  const bool told = group_.ended();
  LOG(WARNING) << "rank " << join().rank() << " leaves generation " << generation << ": " << cause;
  if (comm_) comm_->Abort(std::string(cause.message()));
  group_.Watch(nullptr);
  if (sync_) sync_->Abandon();
  // Reports of the rounds this group finished still count: deliver them before joining again.
  if (reports_) {
    if (absl::Status s = reports_->Flush(absl::Now() + absl::Seconds(10)); !s.ok()) {
      LOG(WARNING) << "some reports of generation " << generation << " were not delivered: " << s;
    }
  }
  loader_.reset();
  if (absl::Status s = snapshot_.Restore(*model_, *optimizer_); !s.ok()) return s;
  if (absl::Status s = group_.Rejoin(snapshot_.next_round(), told ? absl::OkStatus() : cause,
                                     options_.regroup_timeout, finished);
      !s.ok() || *finished) {
    return s;
  }
  result_.rank = join().rank();
  ++result_.regroups;
  SetLogContext(join().run_id(), absl::StrCat(join().rank()));
  LOG(INFO) << "joined generation " << join().generation() << " as rank " << join().rank() << " of "
            << join().world_size() << "; resuming at round " << join().start_round() << " (step "
            << join().start_step() << ")";
  return absl::OkStatus();
}

absl::StatusOr<TrainerResult> Worker::Run() {
  if (absl::Status s = group_.Join(options_.connect_timeout); !s.ok()) return s;
  result_.rank = join().rank();
  SetLogContext(join().run_id(), absl::StrCat(join().rank()));
  LOG(INFO) << "joined run " << join().run_id() << " as rank " << join().rank() << " of "
            << join().world_size() << " (generation " << join().generation() << ")";

  absl::Status status = Setup();
  bool first = true;
  while (status.ok()) {
    status = FormGroup();
    if (status.ok() && first && recipe_.eval_on_start) status = Evaluate(join().start_step());
    first = false;
    if (status.ok()) status = TrainGeneration();
    if (status.ok() || !Recoverable()) break;
    // A failure the group can survive: return to the last averaged state and re-form.
    bool finished = false;
    status = Regroup(status, &finished);
    if (finished) break;
  }
  if (status.ok() && snapshots_ != nullptr && join().rank() == 0) {
    status = snapshots_->Final(result_.steps, *model_);
  }
  if (status.ok()) status = ExportFinalModel();
  group_.StopHeartbeats();
  if (!status.ok()) {
    LOG(ERROR) << "rank " << join().rank() << ": " << status;
    if (comm_) comm_->Abort(std::string(status.message()));
  }
  if (model_) result_.params_hash = ParamsDigest(*model_);
  if (sync_) result_.bytes_sent = sync_->bytes_sent();
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
