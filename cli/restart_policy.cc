#include "cli/restart_policy.h"

#include <string.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"

namespace qsr {

RestartPolicy::Decision RestartPolicy::OnExit(int worker, int exit_code, Run run, absl::Time now) {
  Decision d;
  if (exit_code == 0) {
    d.action = Action::kFinished;
    d.reason = "finished";
    return d;
  }
  d.action = Action::kGiveUp;
  if (exit_code == 2) {
    d.reason = "a usage error (exit code 2): a restart would fail the same way";
    return d;
  }
  if (run == Run::kOver) {
    d.reason = "the run is over";
    return d;
  }
  if (run == Run::kUnreachable) {
    d.reason = "the coordinator does not answer (the run is over or out of reach)";
    return d;
  }
  if (restarts_ >= options_.max_restarts) {
    d.reason =
        absl::StrCat("the node's ", options_.max_restarts, " restarts (--max-restarts) are spent");
    return d;
  }
  const int before = restarts_of_[worker]++;
  const absl::Duration delay =
      BackoffDelay(BackoffPolicy{options_.first_delay, options_.max_delay, 0}, before);
  d.action = Action::kRestart;
  d.restart = ++restarts_;
  d.restart_at = now + delay;
  d.reason = absl::StrCat("restart ", d.restart, " of ", options_.max_restarts, " in ",
                          absl::FormatDuration(delay));
  return d;
}

std::string DescribeExit(int exit_code) {
  if (exit_code > 128 && exit_code < 128 + 65) {
    const int sig = exit_code - 128;
    const char* abbrev = sigabbrev_np(sig);
    return abbrev ? absl::StrCat("killed by SIG", abbrev) : absl::StrCat("killed by signal ", sig);
  }
  return absl::StrCat("exit code ", exit_code);
}

}  // namespace qsr
