#include "coordinator/round_barrier.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/outcome.h"

namespace qsr {

bool RoundBarrier::Waiting(int rank) const {
  return rank >= 0 && rank < static_cast<int>(slots_.size()) && slots_[rank] != nullptr;
}

absl::Status RoundBarrier::Arrive(int64_t round, const std::vector<int>& ranks, int world_size,
                                  absl::Time now, absl::Duration timeout, Callback done,
                                  std::vector<Completion>* completions) {
  if (round_ < 0) {
    round_ = round;
    deadline_ = now + timeout;
  } else if (round_ != round) {
    return absl::FailedPreconditionError(absl::StrCat("rank ", ranks.empty() ? -1 : ranks[0],
                                                      " asks for round ", round,
                                                      " while the group is at round ", round_));
  }
  auto call = std::make_shared<Call>();
  call->done = std::move(done);
  call->ranks = ranks;
  if (slots_.size() < static_cast<size_t>(world_size)) slots_.resize(world_size);
  for (int rank : call->ranks) {
    std::shared_ptr<Call> old = slots_[static_cast<size_t>(rank)];
    if (!old) continue;
    // The newer call replaces the older one, with every rank the older one carried.
    for (int r : old->ranks) {
      slots_[static_cast<size_t>(r)] = nullptr;
      --waiting_;
    }
    v1::NextRoundsReply superseded;
    *superseded.mutable_outcome() =
        MakeOutcome(v1::Outcome::TIMEOUT, "superseded by a newer NextRounds call");
    completions->push_back([cb = std::move(old->done), superseded] { cb(superseded); });
  }
  for (int rank : call->ranks) slots_[static_cast<size_t>(rank)] = call;
  waiting_ += static_cast<int>(call->ranks.size());
  return absl::OkStatus();
}

void RoundBarrier::Release(v1::NextRoundsReply reply, std::vector<Completion>* completions) {
  // Built once and shared by the K answers: no per-waiter copy under the caller's lock.
  auto shared = std::make_shared<const v1::NextRoundsReply>(std::move(reply));
  for (const std::shared_ptr<Call>& call : slots_) {
    // A call with co-members sits in several slots: it is answered at the first.
    if (!call || !call->done) continue;
    completions->push_back([cb = std::move(call->done), shared] { cb(*shared); });
    call->done = nullptr;
  }
  slots_.clear();
  waiting_ = 0;
  round_ = -1;
}

}  // namespace qsr
