// TcpStore: the rendezvous Store of a static world (no coordinator), over plain TCP.
//
// A job started like torchrun's (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) has no coordinator to
// hold its rendezvous keys, and Debian's Gloo ships no TCP store, so one process (rank 0 by
// convention) serves the keys itself: TcpStore::Serve binds host:port and answers every peer from
// an in-process table, and its own Set/Get go to that table directly. The other ranks use
// TcpStore::Connect, which keeps retrying (with backoff) while the server is not up yet, until a
// deadline.
//
// Wire protocol (version 1; all integers big-endian). Every message is one frame: a u32 payload
// length (at most kMaxFrameBytes) followed by the payload.
//   Set request:  'S', u32 key length, key, u32 value length, value.
//   Get request:  'G', u64 timeout in milliseconds, u32 key count, then per key: u32 length, key.
//                 The server answers once every key exists or the timeout passes.
//   Reply:        u8 absl::StatusCode. OK replies to Get carry u32 count, then per value: u32
//                 length, value; OK replies to Set carry nothing. Error replies carry u32 length
//                 and a message (DEADLINE_EXCEEDED names the missing keys).
// A frame the server cannot parse (oversized, truncated, unknown op, trailing bytes, a key or
// value over its limit) gets an INVALID_ARGUMENT reply and the connection is closed. Timeouts are
// relative, so the clocks of the machines need not agree.
//
// Bounds. Keys up to kMaxKeyBytes, values up to kMaxValueBytes, kMaxKeysPerGet keys per Get,
// kMaxStoredBytes in the whole table, kMaxConnections open connections per server. Every wait
// has a deadline: a client's connect and Set are bounded by options.connect_timeout, a Get by its
// own deadline; the server waits at most options.frame_timeout for the rest of a frame once it
// has begun, and closes connections idle for options.idle_timeout.
//
// Security: the server trusts whoever reaches its port (like torchrun's store). Bind it to an
// address that only the job's machines can reach.
//
// Thread-safe: Set and Get may be called from any number of threads (a client opens one
// connection per concurrent call). Destroying a serving store stops the server: calls waiting on
// it, local or remote, fail promptly with UNAVAILABLE. Nothing may race with the destructor.
//
// Pure C++ and POSIX sockets: no torch, no gRPC.
#ifndef QSR_COMMON_TCP_STORE_H_
#define QSR_COMMON_TCP_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/store.h"

namespace qsr {

struct TcpStoreOptions {
  // Client: how long to keep retrying a connection the server refuses (it may still be
  // starting), and the bound on each Set.
  absl::Duration connect_timeout = absl::Seconds(60);
  // Server: once a frame's first byte has arrived, how long the rest may take.
  absl::Duration frame_timeout = absl::Seconds(30);
  // Server: connections with no request for this long are closed (clients reconnect).
  absl::Duration idle_timeout = absl::Minutes(10);
};

class TcpStore : public Store {
 public:
  static constexpr size_t kMaxKeyBytes = 4096;
  static constexpr size_t kMaxValueBytes = size_t{16} << 20;
  static constexpr size_t kMaxKeysPerGet = 4096;
  static constexpr size_t kMaxFrameBytes = size_t{32} << 20;
  static constexpr size_t kMaxStoredBytes = size_t{256} << 20;
  static constexpr int kMaxConnections = 256;

  // Serves on `bind_host`:`port`. An empty bind_host means every local address; port 0 lets the
  // OS choose (see port()). UNAVAILABLE when the address cannot be bound (naming it and why).
  static absl::StatusOr<std::unique_ptr<TcpStore>> Serve(const std::string& bind_host, int port,
                                                         const TcpStoreOptions& options = {});
  // A client of the server at `host`:`port`. Retries connecting with backoff until `deadline`
  // (then DEADLINE_EXCEEDED naming the address and the last error), so peers may start before
  // the server does.
  static absl::StatusOr<std::unique_ptr<TcpStore>> Connect(const std::string& host, int port,
                                                           absl::Time deadline,
                                                           const TcpStoreOptions& options = {});

  ~TcpStore() override;
  TcpStore(const TcpStore&) = delete;
  TcpStore& operator=(const TcpStore&) = delete;

  // INVALID_ARGUMENT for a key or value over its limit; RESOURCE_EXHAUSTED when the table is full.
  absl::Status Set(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::vector<std::string>> Get(const std::vector<std::string>& keys,
                                               absl::Time deadline) override;

  // Whether this store is the server.
  bool serving() const { return server_ != nullptr; }
  // The port the server listens on (the bound port when Serve was given port 0).
  int port() const { return port_; }

 private:
  struct Table;
  struct Server;
  struct Client;

  TcpStore();

  int port_ = 0;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
};

}  // namespace qsr

#endif  // QSR_COMMON_TCP_STORE_H_
