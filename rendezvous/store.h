// Store: the key-value rendezvous that bootstraps collectives (Gloo's full mesh, NCCL's unique id).
//
// Keys are opaque strings; callers scope them by run, generation and communicator sequence number
// (see PrefixStore) so that a re-formed group never reads a stale address. Values are bytes.
// Every blocking call takes a deadline and returns DEADLINE_EXCEEDED naming the missing keys.
//
// Implementations are thread-safe.
#ifndef QSR_RENDEZVOUS_STORE_H_
#define QSR_RENDEZVOUS_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsr {

class Store {
 public:
  virtual ~Store() = default;

  // Sets `key` to `value`, replacing any earlier value.
  virtual absl::Status Set(const std::string& key, const std::string& value) = 0;
  // Waits until every key exists (or the deadline passes), then returns their values in order.
  virtual absl::StatusOr<std::vector<std::string>> Get(const std::vector<std::string>& keys,
                                                       absl::Time deadline) = 0;
  // Waits until every key exists or the deadline passes.
  virtual absl::Status Wait(const std::vector<std::string>& keys, absl::Time deadline);
};

// Prepends `prefix` + "/" to every key of an underlying store it does not own.
class PrefixStore : public Store {
 public:
  PrefixStore(std::string prefix, Store* base) : prefix_(std::move(prefix)), base_(base) {}
  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::vector<std::string>> Get(const std::vector<std::string>& keys,
                                               absl::Time deadline) override;

 private:
  std::string Scoped(const std::string& key) const { return prefix_ + "/" + key; }
  std::string prefix_;
  Store* base_;
};

// An in-process store for tests and single-process runs. Thread-safe.
class InMemoryStore : public Store {
 public:
  InMemoryStore();
  ~InMemoryStore() override;
  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::vector<std::string>> Get(const std::vector<std::string>& keys,
                                               absl::Time deadline) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace qsr

#endif  // QSR_RENDEZVOUS_STORE_H_
