#include "coordinator/membership.h"

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace qsr {

Membership::Membership(Options options) : options_(std::move(options)) {}

void Membership::SetInactive(int rank, bool failed) {
  Member& m = members_[rank];
  if (m.active()) --active_;
  (failed ? m.failed : m.left) = true;
}

Membership::JoinResult Membership::Join(const std::string& worker_id, const std::string& host,
                                        const std::string& device, int64_t next_round,
                                        int64_t failed_generation, absl::Time now,
                                        const std::string& incarnation) {
  if (!forming_) {
    for (Member& m : members_) {
      if (m.worker_id != worker_id || !m.active()) continue;
      const bool restarted = m.incarnation != incarnation;
      if (restarted) {
        EndGeneration(absl::StrCat("rank ", m.rank, " (", worker_id, ") restarted"), {m.rank}, now);
        break;
      }
      if (failed_generation != generation_) {
        m.last_seen = now;
        return JoinResult::kAlreadyMember;
      }
      EndGeneration(absl::StrCat("rank ", m.rank, " (", worker_id, ") lost its group"), {}, now);
      break;
    }
  }
  for (Member& j : joiners_) {
    if (j.worker_id != worker_id) continue;
    j.host = host;
    j.device = device;
    j.next_round = next_round;
    j.incarnation = incarnation;
    j.last_seen = now;
    return JoinResult::kJoining;
  }
  // A running group is full at max_workers. A forming one takes every joiner (a replacement may
  // arrive before the dead member it replaces is known to be dead); TryForm admits at most
  // max_workers, survivors first, and the rest wait for a place.
  const int taken = static_cast<int>(joiners_.size()) + (forming_ ? 0 : active_members());
  const int limit = forming_ ? 4 * options_.max_workers + 16 : options_.max_workers;
  if (taken >= limit) return JoinResult::kFull;
  Member j;
  j.worker_id = worker_id;
  j.host = host;
  j.device = device;
  j.next_round = next_round;
  j.incarnation = incarnation;
  j.last_seen = now;
  joiners_.push_back(std::move(j));
  return JoinResult::kJoining;
}

void Membership::Recover(int64_t generation, const std::vector<std::string>& members,
                         absl::Time now) {
  generation_ = generation;
  members_.clear();
  for (size_t i = 0; i < members.size(); ++i) {
    Member m;
    m.rank = static_cast<int>(i);
    m.worker_id = members[i];
    m.last_seen = now;
    members_.push_back(m);
  }
  active_ = static_cast<int>(members_.size());
  forming_ = false;
  EndGeneration("the coordinator restarted", {}, now);
  after_restart_ = true;
}

void Membership::TouchJoiner(const std::string& worker_id, absl::Time now) {
  for (Member& j : joiners_) {
    if (j.worker_id == worker_id) j.last_seen = now;
  }
}

void Membership::DropJoiner(const std::string& worker_id) {
  joiners_.erase(std::remove_if(joiners_.begin(), joiners_.end(),
                                [&](const Member& j) { return j.worker_id == worker_id; }),
                 joiners_.end());
}

absl::Status Membership::NotAlike(int co_rank, int rank, int64_t generation) {
  return absl::FailedPreconditionError(
      absl::StrCat("co-member rank ", co_rank, " and the caller (rank ", rank,
                   ") do not stand alike in generation ", generation));
}

absl::StatusOr<Membership::Standing> Membership::Check(const std::string& worker_id, int rank,
                                                       int64_t generation, absl::Time now) {
  if (generation <= 0 || generation > generation_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "generation ", generation, " does not exist (the current one is ", generation_, ")"));
  }
  if (generation < generation_) return Standing::kEnded;
  if (rank < 0 || rank >= static_cast<int>(members_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is not a member (generation ",
                                                   generation_, " has ", members_.size(),
                                                   " workers)"));
  }
  Member& m = members_[rank];
  if (m.worker_id != worker_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("rank ", rank, " belongs to worker ", m.worker_id, ", not ", worker_id));
  }
  if (!m.active()) return Standing::kEnded;
  // A member of an ended generation is still alive (it will join again): keep it expected.
  m.last_seen = now;
  return forming_ ? Standing::kEnded : Standing::kCurrent;
}

void Membership::EndGeneration(const std::string& reason, const std::vector<int>& failed_ranks,
                               absl::Time now) {
  for (int rank : failed_ranks) {
    if (rank < 0 || rank >= static_cast<int>(members_.size())) continue;
    SetInactive(rank, /*failed=*/true);
    expected_.erase(std::remove_if(expected_.begin(), expected_.end(),
                                   [&](const auto& e) { return e.second == rank; }),
                    expected_.end());
  }
  if (forming_) return;
  LOG(WARNING) << "generation " << generation_ << " ended: " << reason;
  forming_ = true;
  forming_since_ = now;
  end_reason_ = reason;
  expected_.clear();
  for (const Member& m : members_) {
    if (m.active()) expected_.emplace_back(m.worker_id, m.rank);
  }
}

void Membership::MarkLeft(int rank) {
  if (rank >= 0 && rank < static_cast<int>(members_.size())) SetInactive(rank, /*failed=*/false);
  expected_.erase(std::remove_if(expected_.begin(), expected_.end(),
                                 [&](const auto& e) { return e.second == rank; }),
                  expected_.end());
}

void Membership::FailSilent(absl::Time now) {
  for (Member& m : members_) {
    if (m.active() && now - m.last_seen > options_.heartbeat_timeout) SetInactive(m.rank, true);
  }
}

std::vector<int> Membership::Expired(absl::Time now) const {
  std::vector<int> expired;
  if (forming_) return expired;
  for (const Member& m : members_) {
    if (m.active() && now - m.last_seen > options_.heartbeat_timeout) expired.push_back(m.rank);
  }
  return expired;
}

bool Membership::TryForm(absl::Time now) {
  if (!forming_) return false;
  const int n = static_cast<int>(joiners_.size());
  bool ready;
  if (generation_ == 0) {
    ready = n >= options_.initial_size;
  } else {
    // Survivors are waited for, except those that have gone silent too (a dead worker whose
    // peers noticed first).
    const bool all_back = std::all_of(expected_.begin(), expected_.end(), [&](const auto& e) {
      const Member& old = members_[e.second];
      const bool silent = !after_restart_ && now - old.last_seen > options_.heartbeat_timeout;
      return silent || std::any_of(joiners_.begin(), joiners_.end(),
                                   [&](const Member& j) { return j.worker_id == e.first; });
    });
    ready = n >= std::max(options_.min_workers, 1) &&
            (all_back || now >= forming_since_ + options_.regroup_timeout);
  }
  if (!ready) return false;
  auto old_rank = [&](const Member& j) {
    for (const auto& [id, rank] : expected_) {
      if (id == j.worker_id) return rank;
    }
    return INT_MAX;
  };
  std::stable_sort(joiners_.begin(), joiners_.end(), [&](const Member& a, const Member& b) {
    if (a.next_round != b.next_round) return a.next_round > b.next_round;
    return old_rank(a) < old_rank(b);
  });
  const size_t admitted = std::min<size_t>(joiners_.size(), options_.max_workers);
  members_.assign(joiners_.begin(), joiners_.begin() + admitted);
  joiners_.erase(joiners_.begin(), joiners_.begin() + admitted);
  expected_.clear();
  formed_next_round_ = members_.front().next_round;
  active_ = 0;
  for (size_t i = 0; i < members_.size(); ++i) {
    members_[i].rank = static_cast<int>(i);
    members_[i].last_seen = now;
    active_ += members_[i].active() ? 1 : 0;
  }
  ++generation_;
  after_restart_ = false;
  forming_ = false;
  LOG(INFO) << "generation " << generation_ << " formed with " << members_.size() << " workers";
  return true;
}

std::optional<std::string> Membership::Unformable(absl::Time now) const {
  if (!forming_ || generation_ == 0) return std::nullopt;
  const int n = static_cast<int>(joiners_.size());
  // Nobody left to wait for, or nobody came back.
  const bool all_gone = std::none_of(members_.begin(), members_.end(), [&](const Member& m) {
    return m.active() && std::any_of(expected_.begin(), expected_.end(),
                                     [&](const auto& e) { return e.first == m.worker_id; });
  });
  if (n == 0 && (all_gone || now >= forming_since_ + options_.regroup_timeout)) {
    return absl::StrCat("no worker of generation ", generation_, " came back within ",
                        absl::FormatDuration(options_.regroup_timeout), " (", end_reason_, ")");
  }
  if (n < options_.min_workers && now >= forming_since_ + options_.replacement_timeout) {
    return absl::StrCat("only ", n, " workers (min_workers ", options_.min_workers, ") within ",
                        absl::FormatDuration(options_.replacement_timeout), " after generation ",
                        generation_, " ended (", end_reason_, ")");
  }
  return std::nullopt;
}

}  // namespace qsr
