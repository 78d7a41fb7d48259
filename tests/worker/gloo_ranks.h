// Ranks as threads in one test process, joined by Gloo through one in-memory store: the set-up
// shared by the tests of worker/comm and worker/round_sync.
#ifndef QSR_TESTS_WORKER_GLOO_RANKS_H_
#define QSR_TESTS_WORKER_GLOO_RANKS_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "rendezvous/store.h"
#include "worker/comm/gloo_communicator.h"

namespace qsr {

using Comms = std::vector<std::unique_ptr<GlooCommunicator>>;

// Runs fn(rank) on one thread per rank and joins them. Every fn must itself be bounded (all
// collectives and rendezvous in these tests have timeouts).
inline void RunRanks(int size, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  threads.reserve(size);
  for (int r = 0; r < size; ++r) threads.emplace_back(fn, r);
  for (auto& t : threads) t.join();
}

// Connects `size` ranks through one fresh in-memory store; fails the test if any rank fails (its
// slot is then null).
inline Comms Connect(int size, absl::Duration timeout = absl::Seconds(30),
                     bool fused_average = true) {
  InMemoryStore store;
  Comms comms(size);
  std::vector<absl::Status> statuses(size);
  RunRanks(size, [&](int rank) {
    PrefixStore scoped("run/gen0/comm0", &store);
    GlooOptions options;
    options.timeout = timeout;
    options.fused_average = fused_average;
    auto comm = GlooCommunicator::Create(&scoped, rank, size, options);
    statuses[rank] = comm.status();
    if (comm.ok()) comms[rank] = std::move(*comm);
  });
  for (int r = 0; r < size; ++r) {
    EXPECT_TRUE(statuses[r].ok()) << "rank " << r << ": " << statuses[r];
  }
  return comms;
}

// Both undefined, or the same shape, dtype and bytes (in any memory layout).
inline bool BitIdentical(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  const torch::Tensor x = a.contiguous(), y = b.contiguous();
  return x.sizes() == y.sizes() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.numel() * x.element_size()) == 0;
}

}  // namespace qsr

#endif  // QSR_TESTS_WORKER_GLOO_RANKS_H_
