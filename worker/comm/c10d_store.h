// C10dStore: the rendezvous Store of a static world, over LibTorch's own c10d::TCPStore, so that
// it is the very store torchrun, torch.distributed's env:// initialisation and Kubeflow's
// PyTorchJob use.
//
// Two roles, as in torch.distributed:
//   Serve(host, port): this process runs the TCPStore server (torch.distributed's rank 0 with
//     env://, when no launcher serves it) and talks to it as a client too. Port 0 lets the OS
//     choose (see port()). Multi-tenant, as env://'s: a second Serve on the same port in the same
//     process shares the running server (and its keys) instead of failing.
//   Connect(host, port, deadline): a client of a server elsewhere: rank 0's, or torchrun's agent
//     store (TORCHELASTIC_USE_AGENT_STORE=True), which the elastic agent serves on
//     MASTER_ADDR:MASTER_PORT before it starts the ranks. Retries while the server is not up yet,
//     until the deadline.
// Keys are c10d keys as they are (no prefix added); wrap it in a PrefixStore to scope them (under
// torchrun's agent store: "/worker/attempt_<TORCHELASTIC_RESTART_COUNT>", as torch.distributed
// does, so that a restarted attempt never reads the keys of the one before).
//
// Deadlines. Get and Wait wait at most until their deadline, then DEADLINE_EXCEEDED naming the
// keys still missing. Set is bounded by options' op timeout (c10d applies its store timeout to
// every socket operation). Errors from the server (gone, unreachable) are UNAVAILABLE.
//
// Thread-safe: calls may come from any thread; c10d serialises them on its one connection, so a
// long Get from one thread delays the others' calls until it returns.
//
// Lifecycle: destroying a serving store stops the server; its clients' calls then fail with
// UNAVAILABLE. Security: like torchrun's store, the server trusts whoever reaches its port.
#ifndef QSR_WORKER_COMM_C10D_STORE_H_
#define QSR_WORKER_COMM_C10D_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rendezvous/store.h"

namespace c10d {
class TCPStore;
}  // namespace c10d

namespace qsr {

class C10dStore : public Store {
 public:
  // Serves on `host`:`port` (host: the address to listen on; empty: every local address) and
  // connects to it. UNAVAILABLE naming the address when it cannot be bound. `op_timeout` bounds
  // each Set.
  static absl::StatusOr<std::unique_ptr<C10dStore>> Serve(
      const std::string& host, int port, absl::Duration op_timeout = absl::Minutes(5));
  // Connects to the server at `host`:`port`, retrying until `deadline` (then DEADLINE_EXCEEDED
  // naming the address). `op_timeout` bounds each Set.
  static absl::StatusOr<std::unique_ptr<C10dStore>> Connect(
      const std::string& host, int port, absl::Time deadline,
      absl::Duration op_timeout = absl::Minutes(5));

  ~C10dStore() override;

  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::vector<std::string>> Get(const std::vector<std::string>& keys,
                                               absl::Time deadline) override;
  absl::Status Wait(const std::vector<std::string>& keys, absl::Time deadline) override;

  // The server's port (the OS-chosen one after Serve(host, 0)).
  int port() const;
  // The underlying c10d store, e.g. for a c10d ProcessGroup.
  c10d::TCPStore& c10d() { return *store_; }

 private:
  C10dStore(std::unique_ptr<c10d::TCPStore> store, std::string address);

  std::unique_ptr<c10d::TCPStore> store_;
  const std::string address_;  // host:port, for messages
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_C10D_STORE_H_
