#include "coordinator/run_status.h"

#include <algorithm>

#include "proto/json/json_line.h"
#include "qsr/v1/run_log.pb.h"

namespace qsr {
namespace {

void AddWorkers(const RunView& v, absl::Time now, v1::GetStatusReply* s) {
  auto add = [&](const Membership::Member& m, const char* state, int rank) {
    v1::WorkerInfo* w = s->add_worker_info();
    w->set_rank(rank);
    w->set_worker_id(m.worker_id);
    w->set_host(m.host);
    w->set_device(m.device);
    w->set_state(state);
    w->set_last_seen_s(absl::ToDoubleSeconds(now - m.last_seen));
    w->set_samples_per_sec(v.ledger->worker_samples_per_sec(m.worker_id));
  };
  for (const Membership::Member& m : v.membership->members()) {
    add(m, m.left ? "LEFT" : m.failed ? "FAILED" : "ACTIVE", m.rank);
  }
  for (const Membership::Member& j : v.membership->joiners()) add(j, "JOINING", -1);
}

}  // namespace

v1::GetStatusReply RenderStatus(const RunView& v, absl::Time now) {
  const RoundLedger& ledger = *v.ledger;
  const Membership& membership = *v.membership;
  v1::GetStatusReply s;
  s.set_run_id(v.run_id);
  s.set_state(v.state);
  s.set_message(v.message);
  const int64_t step =
      ledger.committed_end_step().value_or(std::max<int64_t>(0, v.recipe->resume_from_step));
  s.set_step(step);
  s.set_total_steps(v.planner->total_steps());
  s.set_epoch(static_cast<double>(step) / v.recipe->steps_per_epoch);
  s.set_epochs(v.recipe->epochs);
  s.set_round(ledger.first_uncommitted());
  const v1::RoundPlan& current = ledger.current();
  s.set_lr(current.h() > 0 ? current.lr() : v.planner->schedule().At(0));
  s.set_h(current.h());
  s.set_workers(membership.active_members());
  // Before the first generation forms, the size it will have.
  s.set_world_size(membership.forming() && v.waiting
                       ? v.world_size
                       : static_cast<int>(membership.members().size()));
  s.set_generation(membership.generation());
  s.set_samples_per_sec(ledger.samples_per_sec());
  s.set_train_loss(ledger.train_loss());
  const v1::EvalReport* eval = ledger.last_eval();
  s.set_test_acc(eval ? eval->test_acc() : -1.0);
  s.set_test_loss(eval ? eval->test_loss() : -1.0);
  s.set_bytes_per_worker(ledger.bytes_per_worker());
  s.set_elapsed_s(absl::ToDoubleSeconds((v.ended ? v.ended_at : now) - v.started));
  s.set_run_dir(ledger.run_dir());
  s.set_optimizer(v.recipe->optimizer);
  s.set_model(v.recipe->model);
  s.set_failures(v.failures);
  s.set_stop_requested(v.stop_requested);
  s.set_last_checkpoint(ledger.last_checkpoint());
  AddWorkers(v, now, &s);
  return s;
}

std::string RenderSummaryJson(const RunView& v) {
  const RoundLedger& ledger = *v.ledger;
  v1::RunLogSummary j;
  j.set_run_id(v.run_id);
  j.set_state(v.state);
  j.set_message(v.message);
  j.set_model(v.recipe->model);
  j.set_optimizer(v.recipe->optimizer);
  j.set_workers(v.world_size);
  j.set_generation(static_cast<int32_t>(v.membership->generation()));
  j.set_regroups(static_cast<int32_t>(v.regroups));
  j.set_failures(static_cast<int32_t>(v.failures));
  j.set_step(static_cast<int32_t>(ledger.committed_end_step().value_or(0)));
  j.set_total_steps(static_cast<int32_t>(v.planner->total_steps()));
  j.set_rounds(static_cast<int32_t>(ledger.committed().size()));
  j.set_bytes_per_worker(static_cast<double>(ledger.bytes_per_worker()));
  j.set_elapsed_s(absl::ToDoubleSeconds(v.ended_at - v.started));
  if (const v1::EvalReport* eval = ledger.last_eval()) {
    j.set_test_acc(eval->test_acc());
    j.set_test_loss(eval->test_loss());
  }
  return ToJsonLine(j);
}

}  // namespace qsr
