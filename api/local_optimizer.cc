#include "qsr/local_optimizer.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "qsr/distributed.h"
#include "worker/params_digest.h"
#include "worker/round_sync.h"

namespace qsr {
namespace {

// Runs `fn`, turning a LibTorch exception into INTERNAL: nothing may escape to the caller.
template <typename Fn>
absl::Status TorchCall(const char* what, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

absl::Status CheckRule(const SyncRuleParams& rule) {
  auto bad = [](const char* name, auto value, const char* allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalOptimizer: rule.", name, " = ", value, "; allowed: ", allowed));
  };
  // Written so that NaN fails too.
  if (!(rule.alpha >= 0)) return bad("alpha", rule.alpha, ">= 0 (0 = constant H = init_h)");
  if (!(rule.power > 0)) return bad("power", rule.power, "> 0 (2 = quadratic)");
  if (rule.min_h < 1) return bad("min_h", rule.min_h, ">= 1");
  if (rule.init_h < 1) return bad("init_h", rule.init_h, ">= 1");
  if (rule.warmup_steps < 0) return bad("warmup_steps", rule.warmup_steps, ">= 0");
  if (rule.post_local_step < 0) return bad("post_local_step", rule.post_local_step, ">= 0");
  if (rule.total_steps < 0) return bad("total_steps", rule.total_steps, ">= 0");
  // Past T the rule gives H = 1, so a forgotten T would silently average after every step.
  if (rule.alpha > 0 && rule.total_steps == 0 && !rule.data_parallel) {
    return bad("total_steps", rule.total_steps,
               "> 0 when alpha > 0 (T: the step where the LR schedule ends)");
  }
  return absl::OkStatus();
}

// The round as RoundSync takes it: no evaluation or checkpoint inside the library's rounds.
v1::RoundPlan PlanOf(const Round& round) {
  v1::RoundPlan plan;
  plan.set_round(round.index);
  plan.set_start_step(round.start_step);
  plan.set_h(round.h);
  plan.set_lr(round.lr);
  plan.set_data_parallel(round.data_parallel);
  return plan;
}

}  // namespace

LocalOptimizer::LocalOptimizer(torch::optim::Optimizer* optimizer, const torch::nn::Module* model,
                               Communicator* comm, std::unique_ptr<RoundSync> sync,
                               const LocalOptimizerOptions& options)
    : optimizer_(optimizer),
      model_(model),
      comm_(comm),
      sync_(std::move(sync)),
      rule_(options.rule),
      step_(options.start_step) {}

LocalOptimizer::~LocalOptimizer() = default;
LocalOptimizer::LocalOptimizer(LocalOptimizer&&) noexcept = default;
LocalOptimizer& LocalOptimizer::operator=(LocalOptimizer&&) noexcept = default;

absl::StatusOr<LocalOptimizer> LocalOptimizer::Create(torch::optim::Optimizer& optimizer,
                                                      const torch::nn::Module& model,
                                                      Communicator& comm,
                                                      const LocalOptimizerOptions& options) {
  if (absl::Status s = CheckRule(options.rule); !s.ok()) return s;
  if (options.start_step < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalOptimizer: start_step = ", options.start_step, "; allowed: >= 0"));
  }
  if (optimizer.param_groups().empty()) {
    return absl::InvalidArgumentError("LocalOptimizer: the optimizer has no parameter groups");
  }
  RoundSyncOptions sync_options;
  sync_options.avg_m = options.avg_m;
  sync_options.avg_v = options.avg_v;
  absl::StatusOr<std::unique_ptr<RoundSync>> sync = absl::InternalError("unset");
  if (absl::Status s = TorchCall("LocalOptimizer: tracking the model",
                                 [&] {
                                   sync = RoundSync::Create(model, optimizer, sync_options);
                                   return sync.status();
                                 });
      !s.ok()) {
    return s;
  }
  if (options.broadcast_initial_model) {
    if (absl::Status s = TorchCall("LocalOptimizer: broadcasting the initial model",
                                   [&] {
                                     return (*sync)->BeginGeneration(&comm,
                                                                     /*broadcast_moments=*/false,
                                                                     /*bucket_gradients=*/false);
                                   });
        !s.ok()) {
      return s;
    }
  } else {
    (*sync)->Attach(&comm);
  }
  return LocalOptimizer(&optimizer, &model, &comm, std::move(*sync), options);
}

absl::StatusOr<LocalOptimizer> LocalOptimizer::Create(torch::optim::Optimizer& optimizer,
                                                      const torch::nn::Module& model,
                                                      DistributedContext& context,
                                                      const LocalOptimizerOptions& options) {
  absl::StatusOr<LocalOptimizer> made = Create(optimizer, model, context.communicator(), options);
  if (made.ok()) made->context_ = &context;
  return made;
}

absl::StatusOr<bool> LocalOptimizer::Step() {
  return Step(std::numeric_limits<double>::quiet_NaN());
}

absl::StatusOr<bool> LocalOptimizer::Step(double loss) {
  if (!in_round_) {
    if (absl::Status s = BeginRound(); !s.ok()) return s;
  }
  const v1::RoundPlan plan = PlanOf(current_);
  // Data-parallel rounds average the gradients before the step (RoundSync::SyncGradients).
  if (absl::Status s = TorchCall("LocalOptimizer: averaging gradients",
                                 [&] {
                                   if (absl::Status b = sync_->BeginStep(plan, step_); !b.ok()) {
                                     return b;
                                   }
                                   return sync_->SyncGradients(plan);
                                 });
      !s.ok()) {
    return s;
  }
  if (absl::Status s = TorchCall("LocalOptimizer: optimizer step",
                                 [&] {
                                   optimizer_->step();
                                   return absl::OkStatus();
                                 });
      !s.ok()) {
    return s;
  }
  ++step_;
  loss_sum_ += loss;  // NaN stays NaN: the round's loss is then unknown
  if (step_ < current_.end_step()) return false;
  if (absl::Status s = EndRound(); !s.ok()) return s;
  return true;
}

absl::Status LocalOptimizer::BeginRound() {
  // The round's H comes from the LR its first step trains with: read it now, before the step.
  double lr = 0;
  if (absl::Status s = TorchCall("LocalOptimizer: reading the learning rate",
                                 [&] {
                                   lr = optimizer_->param_groups()[0].options().get_lr();
                                   return absl::OkStatus();
                                 });
      !s.ok()) {
    return s;
  }
  int64_t h = SyncPeriod(rule_, step_, lr);
  // Cut at the schedule's end, as the coordinator's planner does, so the run ends averaged.
  if (step_ < rule_.total_steps) h = std::min(h, rule_.total_steps - step_);
  current_.index = rounds_;
  current_.start_step = step_;
  current_.h = h;
  current_.lr = lr;
  // As the planner decides it: data-parallel optimizers, and post-local SGD's first phase.
  current_.data_parallel = rule_.data_parallel || step_ < rule_.post_local_step;
  in_round_ = true;
  round_started_ = absl::Now();
  loss_sum_ = 0.0;
  return absl::OkStatus();
}

absl::Status LocalOptimizer::EndRound() {
  // Local rounds average the model (and moments); data-parallel parameters are identical already
  // (same mean gradient, same update).
  absl::StatusOr<RoundSyncResult> synced = absl::InternalError("unset");
  if (absl::Status s = TorchCall("LocalOptimizer: averaging the model",
                                 [&] {
                                   synced = sync_->EndRound(PlanOf(current_));
                                   return synced.status();
                                 });
      !s.ok()) {
    return s;
  }
  last_ = current_;
  ++rounds_;
  in_round_ = false;
  if (context_ == nullptr || !context_->reports_rounds()) return absl::OkStatus();
  RoundResult result;
  result.round = current_;
  result.train_loss = loss_sum_ / static_cast<double>(current_.h);
  result.seconds = absl::ToDoubleSeconds(absl::Now() - round_started_);
  result.bytes_sent = synced->bytes_sent;
  // As qsr-worker: the digest of a round that ended averaged, the same on every rank.
  if (synced->synced) {
    if (absl::Status s = TorchCall("LocalOptimizer: hashing the parameters",
                                   [&] {
                                     result.params_digest = ParamsDigest(*model_);
                                     return absl::OkStatus();
                                   });
        !s.ok()) {
      return s;
    }
  }
  context_->ReportRound(result);
  return absl::OkStatus();
}

absl::Status LocalOptimizer::AverageModel() {
  return TorchCall("LocalOptimizer: averaging the model", [&] { return sync_->AverageModel(); });
}

}  // namespace qsr
