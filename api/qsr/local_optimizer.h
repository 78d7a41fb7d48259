// LocalOptimizer: Local SGD (or Local AdamW, or local steps of any torch::optim::Optimizer) with
// the Quadratic Synchronization Rule, for your own LibTorch training loop.
//
// It wraps your optimizer. Each Step() runs the optimizer's step(); at the end of a round it
// averages the model across ranks (parameters and floating buffers such as BatchNorm statistics,
// in one flat all-reduce; with avg_m / avg_v AdamW's moments too) and reports that it did. The
// averaging is qsr-worker's own (worker/round_sync.h), not a copy. The length H of each round is
// decided when the round begins, by SyncPeriod() (common/sync_rule.h) from the optimizer's current
// learning rate (param_groups()[0] lr, which your own scheduler sets):
//   H = init_h                                         while step < warmup_steps or alpha == 0
//   H = max(min(max(floor((alpha/lr)^power), min_h), T - step), 1)   otherwise
// and the round is cut where the schedule ends (step T = rule.total_steps), so a run of T steps
// always ends averaged. This is the C++ counterpart of the authors' Python
// LocalOptimizer(optim, warmup_steps, total_steps, alpha, power, min_h, init_h, step_ctr), whose
// step() returns `averaged`, with one refinement: H is read from the LR of the round's *first*
// step (at the start of that Step(), before the inner optimizer step), which is the rule's
// definition and makes H the same whether your scheduler steps before or after the optimizer.
// Our coordinator's round plan (common/round_planner.h) comes from the same SyncPeriod(), so a
// LocalOptimizer fed the LrSchedule of a recipe averages at exactly the steps `qsrctl plan` lists.
//
// Data-parallel mode (rule.data_parallel = true, e.g. plain distributed SGD or AdamW, and the
// steps before rule.post_local_step in post-local SGD): H is 1; Step() all-reduces (averages) the
// gradients before the inner step, so parameters stay identical, and returns true. Floating
// buffers (BatchNorm statistics) are not averaged in this mode: call AverageModel() before
// evaluating or saving.
//
// Usage (every rank runs the same code; see examples/local_sgd/main.cc):
//
//   auto ctx = qsr::InitFromEnvironment();              // or InitWithCoordinator(address)
//   torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
//   qsr::LocalOptimizerOptions options;
//   options.rule.alpha = 0.2; options.rule.min_h = 2; options.rule.init_h = 2;
//   options.rule.warmup_steps = 100; options.rule.total_steps = T;
//   auto opt = qsr::LocalOptimizer::Create(sgd, *model, **ctx, options);
//   for (int64_t t = 0; t < T; ++t) {
//     SetLr(sgd, my_schedule(t));
//     sgd.zero_grad();
//     torch::Tensor loss = loss_fn(model->forward(x), y);
//     loss.backward();
//     absl::StatusOr<bool> averaged = opt->Step(loss.item<double>());  // true: a round ended
//     if (!averaged.ok()) { /* a peer failed or timed out: stop */ }
//   }
//
// Reporting rounds. Created with a DistributedContext (rather than only its communicator), it
// hands every round it ends to DistributedContext::ReportRound: with a coordinator, the run's
// rounds.jsonl then lists them (start step, H, LR, mean loss when Step() was given the losses,
// seconds, bytes, the averaged parameters' digest).
//
// Contract. Every rank must build the same architecture (same tensors in the same order) and call
// Create(), Step() and AverageModel() the same number of times in the same order: they issue
// collectives, which must match across ranks. The learning rate must be the same on every rank
// at the first step of each round (otherwise ranks would disagree on H); the rule's parameters
// and start_step must be the same too.
//
// Errors. Communication failures (a peer died, a collective timed out) come back as the
// communicator's status, and the communicator is then aborted: every later call fails fast.
// LibTorch exceptions are caught and returned as INTERNAL. No exception escapes.
//
// Lifecycle and thread-safety. The optimizer, the model's tensors and the communicator are
// referenced, not owned: they must outlive the LocalOptimizer, and the model's tensors must not
// be replaced (e.g. by Module::to() after Create()). Thread-compatible: use one LocalOptimizer
// from one thread, not concurrently with other uses of its communicator.
#ifndef QSR_API_QSR_LOCAL_OPTIMIZER_H_
#define QSR_API_QSR_LOCAL_OPTIMIZER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/round_planner.h"
#include "common/sync_rule.h"
#include "worker/comm/communicator.h"
#include "worker/comm/model_averager.h"

namespace qsr {

class DistributedContext;
class RoundSync;

struct LocalOptimizerOptions {
  // The synchronization rule: alpha, power, min_h, init_h, warmup_steps, total_steps (T, the
  // step where the LR schedule ends), data_parallel and post_local_step. See
  // common/sync_rule.h; SyncRuleParams::FromRecipe() fills it from a recipe. Defaults give
  // H = init_h = 1 (average after every step).
  SyncRuleParams rule;
  // Global steps already taken (the authors' step_ctr), to resume a run mid-schedule. The first
  // Step() is step `start_step` and begins a new round.
  int64_t start_step = 0;
  // Create() copies rank 0's model to every rank, so that all ranks start identical (a broadcast
  // collective). Turn off only if every rank already initialised identically.
  bool broadcast_initial_model = true;
  // AdamW (torch::optim::AdamW): also average its first (avg_m) and second (avg_v) moments at
  // the end of each local round, as qsr-worker's avg_m / avg_v recipes do.
  bool avg_m = false;
  bool avg_v = false;
};

class LocalOptimizer {
 public:
  // Wraps `optimizer`, averaging the parameters and floating buffers of `model` over `comm`.
  // INVALID_ARGUMENT for an optimizer without parameter groups, rule parameters out of range
  // (alpha < 0, power <= 0, min_h < 1, init_h < 1, warmup_steps < 0, post_local_step < 0,
  // total_steps < 0, or total_steps == 0 with alpha > 0), a negative start_step, or model
  // tensors on more than one device. A collective when broadcast_initial_model is set: all ranks
  // must call it.
  static absl::StatusOr<LocalOptimizer> Create(torch::optim::Optimizer& optimizer,
                                               const torch::nn::Module& model, Communicator& comm,
                                               const LocalOptimizerOptions& options);
  // The same over context.communicator(), and every round it ends is reported to `context`
  // (see "Reporting rounds"). The context must outlive the LocalOptimizer.
  static absl::StatusOr<LocalOptimizer> Create(torch::optim::Optimizer& optimizer,
                                               const torch::nn::Module& model,
                                               DistributedContext& context,
                                               const LocalOptimizerOptions& options);

  ~LocalOptimizer();
  LocalOptimizer(LocalOptimizer&&) noexcept;
  LocalOptimizer& operator=(LocalOptimizer&&) noexcept;
  LocalOptimizer(const LocalOptimizer&) = delete;
  LocalOptimizer& operator=(const LocalOptimizer&) = delete;

  // One training step; call it where you would call optimizer.step(), after backward(). If this
  // step begins a round, it first decides the round's H from the current LR. Data-parallel mode
  // averages the gradients, then steps. Local mode steps, and after the round's H-th step
  // averages the model. Returns whether this step ended a round (always true in data-parallel
  // mode). On error the step counter has advanced only if the inner step ran.
  absl::StatusOr<bool> Step();
  // The same, with this step's training loss (on this rank), for the round's report: the mean
  // over the round's steps. NaN: not known (the round's loss is then not reported).
  absl::StatusOr<bool> Step(double loss);

  // Averages the model across ranks now, outside the schedule (e.g. before evaluating or saving
  // mid-round, or BatchNorm statistics in data-parallel mode). The current round is not changed.
  // A collective: all ranks must call it at the same point.
  absl::Status AverageModel();

  // Global steps taken (start_step + Step() calls that ran the inner step).
  int64_t step() const { return step_; }
  // Rounds completed since Create().
  int64_t rounds() const { return rounds_; }
  // H of the round in progress; 0 between rounds (the next H is decided by the next Step()).
  int64_t h() const { return in_round_ ? current_.h : 0; }
  // The round in progress (index counted from 0 at Create(), start_step, h, lr of its first
  // step, data_parallel); meaningful while h() > 0.
  const Round& current_round() const { return current_; }
  // The round that ended last (h == 0 before the first one ends).
  const Round& last_round() const { return last_; }

  const SyncRuleParams& rule() const { return rule_; }
  torch::optim::Optimizer& optimizer() { return *optimizer_; }
  Communicator& communicator() { return *comm_; }

 private:
  LocalOptimizer(torch::optim::Optimizer* optimizer, const torch::nn::Module* model,
                 Communicator* comm, std::unique_ptr<RoundSync> sync,
                 const LocalOptimizerOptions& options);
  // Decides the round that this step begins.
  absl::Status BeginRound();
  // After the round's last step: its average, then its report.
  absl::Status EndRound();

  torch::optim::Optimizer* optimizer_;
  const torch::nn::Module* model_;
  Communicator* comm_;
  std::unique_ptr<RoundSync> sync_;        // the model's (and moments') averages
  DistributedContext* context_ = nullptr;  // where rounds are reported; null: nowhere
  SyncRuleParams rule_;
  int64_t step_ = 0;
  int64_t rounds_ = 0;
  bool in_round_ = false;
  Round current_;
  Round last_;
  // The round in progress, for its report.
  absl::Time round_started_;
  double loss_sum_ = 0.0;  // NaN once a step's loss was not known
};

}  // namespace qsr

#endif  // QSR_API_QSR_LOCAL_OPTIMIZER_H_
