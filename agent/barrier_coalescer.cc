#include "agent/barrier_coalescer.h"

#include <algorithm>

namespace qsr {

void BarrierCoalescer::Admitted(const std::string& worker_id, int rank, int64_t generation) {
  auto [it, inserted] = members_.try_emplace(worker_id, Member{rank, generation});
  if (!inserted) {
    if (--members_per_generation_[it->second.generation] <= 0) {
      members_per_generation_.erase(it->second.generation);
    }
    it->second = Member{rank, generation};
  }
  ++members_per_generation_[generation];
}

void BarrierCoalescer::Confirmed(const std::string& worker_id, int rank, int64_t generation) {
  auto it = members_.find(worker_id);
  // Known in this generation or a later one (a Join seen since the answer was sent): keep that.
  if (it != members_.end() && it->second.generation >= generation) return;
  Admitted(worker_id, rank, generation);
}

std::vector<BarrierCoalescer::Group> BarrierCoalescer::Left(const std::string& worker_id) {
  std::vector<Group> ready;
  auto it = members_.find(worker_id);
  if (it == members_.end()) return ready;
  const int64_t generation = it->second.generation;
  if (--members_per_generation_[generation] <= 0) members_per_generation_.erase(generation);
  members_.erase(it);
  const int local = LocalMembers(generation);
  for (auto h = held_.lower_bound({generation, INT64_MIN});
       h != held_.end() && h->first.first == generation;) {
    if (static_cast<int>(h->second.arrivals.size()) >= local) {
      ready.push_back(Take(h++));
    } else {
      ++h;
    }
  }
  return ready;
}

std::vector<BarrierCoalescer::Group> BarrierCoalescer::Arrive(Arrival arrival, absl::Time now,
                                                              std::optional<uint64_t>* superseded) {
  superseded->reset();
  std::vector<Group> ready;
  const Key key{arrival.generation, arrival.next_round};
  // The same worker already held (under any round): its older call is replaced.
  for (auto h = held_.begin(); h != held_.end() && !superseded->has_value(); ++h) {
    std::vector<Arrival>& a = h->second.arrivals;
    auto same = std::find_if(a.begin(), a.end(), [&](const Arrival& x) {
      return x.worker_id == arrival.worker_id && x.rank == arrival.rank;
    });
    if (same == a.end()) continue;
    *superseded = same->id;
    a.erase(same);
    if (a.empty()) held_.erase(h);
    break;
  }
  // A worker the agent does not know as this rank of this generation is not held: it is not
  // counted among the members a group waits for, so holding it could only delay the others.
  auto member = members_.find(arrival.worker_id);
  if (member == members_.end() || member->second.generation != arrival.generation ||
      member->second.rank != arrival.rank) {
    Group alone;
    alone.generation = arrival.generation;
    alone.next_round = arrival.next_round;
    alone.deadline = arrival.deadline;
    alone.arrivals.push_back(std::move(arrival));
    ready.push_back(std::move(alone));
    return ready;
  }
  const int local = LocalMembers(arrival.generation);
  auto [it, inserted] = held_.try_emplace(key);
  if (inserted) it->second.first_arrival = now;
  it->second.arrivals.push_back(std::move(arrival));
  if (static_cast<int>(it->second.arrivals.size()) >= local) ready.push_back(Take(it));
  return ready;
}

std::vector<BarrierCoalescer::Group> BarrierCoalescer::Expire(absl::Time now) {
  std::vector<Group> ready;
  for (auto h = held_.begin(); h != held_.end();) {
    if (now - h->second.first_arrival >= window_) {
      ready.push_back(Take(h++));
    } else {
      ++h;
    }
  }
  return ready;
}

std::vector<BarrierCoalescer::Group> BarrierCoalescer::Flush(std::optional<int64_t> generation) {
  std::vector<Group> ready;
  for (auto h = held_.begin(); h != held_.end();) {
    if (!generation.has_value() || h->first.first == *generation) {
      ready.push_back(Take(h++));
    } else {
      ++h;
    }
  }
  return ready;
}

absl::Time BarrierCoalescer::NextExpiry() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [key, h] : held_) next = std::min(next, h.first_arrival + window_);
  return next;
}

int BarrierCoalescer::held() const {
  int n = 0;
  for (const auto& [key, h] : held_) n += static_cast<int>(h.arrivals.size());
  return n;
}

int BarrierCoalescer::LocalMembers(int64_t generation) const {
  auto it = members_per_generation_.find(generation);
  return it == members_per_generation_.end() ? 0 : it->second;
}

BarrierCoalescer::Group BarrierCoalescer::Take(std::map<Key, Held>::iterator it) {
  Group g;
  g.generation = it->first.first;
  g.next_round = it->first.second;
  g.arrivals = std::move(it->second.arrivals);
  for (const Arrival& a : g.arrivals) g.deadline = std::min(g.deadline, a.deadline);
  held_.erase(it);
  return g;
}

}  // namespace qsr
