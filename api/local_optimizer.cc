#include "qsr/local_optimizer.h"

#include <algorithm>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

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

}  // namespace

LocalOptimizer::LocalOptimizer(torch::optim::Optimizer* optimizer, Communicator* comm,
                               ModelAverager averager, const LocalOptimizerOptions& options)
    : optimizer_(optimizer),
      comm_(comm),
      averager_(std::move(averager)),
      rule_(options.rule),
      step_(options.start_step) {}

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
  absl::StatusOr<ModelAverager> averager = absl::InternalError("unset");
  if (absl::Status s = TorchCall("LocalOptimizer: tracking the model",
                                 [&] {
                                   averager = ModelAverager::ForModule(model);
                                   return averager.status();
                                 });
      !s.ok()) {
    return s;
  }
  if (options.broadcast_initial_model) {
    if (absl::Status s = TorchCall("LocalOptimizer: broadcasting the initial model",
                                   [&] { return averager->BroadcastFrom(comm, 0); });
        !s.ok()) {
      return s;
    }
  }
  return LocalOptimizer(&optimizer, &comm, std::move(*averager), options);
}

absl::StatusOr<bool> LocalOptimizer::Step() {
  if (!in_round_) {
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
  }
  if (current_.data_parallel) {
    if (absl::Status s = TorchCall("LocalOptimizer: averaging gradients",
                                   [&] { return averager_.AllReduceGradients(*comm_); });
        !s.ok()) {
      return s;
    }
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
  if (step_ < current_.end_step()) return false;
  // Data-parallel parameters are identical already (same mean gradient, same update).
  if (!current_.data_parallel) {
    if (absl::Status s = AverageModel(); !s.ok()) return s;
  }
  last_ = current_;
  ++rounds_;
  in_round_ = false;
  return true;
}

absl::Status LocalOptimizer::AverageModel() {
  return TorchCall("LocalOptimizer: averaging the model",
                   [&] { return averager_.Average(*comm_); });
}

}  // namespace qsr
