#include "common/tcp_store.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::unique_ptr<TcpStore> ServeOnFreePort(const TcpStoreOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<TcpStore>> server = TcpStore::Serve("127.0.0.1", 0, options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

std::unique_ptr<TcpStore> ConnectTo(int port, absl::Duration timeout = absl::Seconds(10)) {
  absl::StatusOr<std::unique_ptr<TcpStore>> client =
      TcpStore::Connect("127.0.0.1", port, absl::Now() + timeout);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? std::move(*client) : nullptr;
}

// A port that was free a moment ago (bound to port 0, then closed).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A raw connection, for speaking the wire protocol by hand.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() { ::close(fd_); }
  bool connected() const { return connected_; }

  void Send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Everything the server sends until it closes the connection, or until `timeout`.
  std::string ReadUntilClosed(absl::Duration timeout) {
    std::string out;
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

std::string U32(uint32_t v) {
  std::string s;
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xff));
  return s;
}

std::string Framed(const std::string& payload) { return U32(payload.size()) + payload; }

TEST(TcpStoreTest, ServesOnAnOsChosenPortAndAnswersClients) {
  std::unique_ptr<TcpStore> server = ServeOnFreePort();
  ASSERT_NE(server, nullptr);
  EXPECT_TRUE(server->serving());
  EXPECT_GT(server->port(), 0);
  std::unique_ptr<TcpStore> client = ConnectTo(server->port());
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->serving());

  ASSERT_TRUE(client->Set("from-client", "1").ok());
  ASSERT_TRUE(server->Set("from-server", std::string("bytes\0with nul", 14)).ok());
  ASSERT_TRUE(client->Set("from-client", "2").ok());  // replaces
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  absl::StatusOr<std::vector<std::string>> on_client =
      client->Get({"from-server", "from-client"}, deadline);
  ASSERT_TRUE(on_client.ok()) << on_client.status();
  EXPECT_EQ(*on_client, (std::vector<std::string>{std::string("bytes\0with nul", 14), "2"}));
  absl::StatusOr<std::vector<std::string>> on_server = server->Get({"from-client"}, deadline);
  ASSERT_TRUE(on_server.ok()) << on_server.status();
  EXPECT_EQ(on_server->at(0), "2");
  absl::StatusOr<std::vector<std::string>> none = client->Get({}, deadline);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
}

TEST(TcpStoreTest, GetWaitsForKeysSetByOtherRanks) {
  std::unique_ptr<TcpStore> server = ServeOnFreePort();
  ASSERT_NE(server, nullptr);
  constexpr int kRanks = 8;
  std::vector<std::vector<std::string>> seen(kRanks);
  std::vector<absl::Status> errors(kRanks);
  std::vector<std::thread> ranks;
  for (int r = 1; r < kRanks; ++r) {
    ranks.emplace_back([&, r] {
      std::unique_ptr<TcpStore> client = ConnectTo(server->port());
      if (client == nullptr) return;
      absl::SleepFor(absl::Milliseconds(10 * r));  // staggered, so most Gets must wait
      errors[r] = client->Set(absl::StrCat("rank", r), absl::StrCat("addr", r));
      std::vector<std::string> keys;
      for (int k = 0; k < kRanks; ++k) keys.push_back(absl::StrCat("rank", k));
      absl::StatusOr<std::vector<std::string>> values =
          client->Get(keys, absl::Now() + absl::Seconds(20));
      if (values.ok()) {
        seen[r] = *values;
      } else {
        errors[r] = values.status();
      }
    });
  }
  ASSERT_TRUE(server->Set("rank0", "addr0").ok());
  for (std::thread& t : ranks) t.join();
  for (int r = 1; r < kRanks; ++r) {
    ASSERT_TRUE(errors[r].ok()) << "rank " << r << ": " << errors[r];
    ASSERT_EQ(seen[r].size(), static_cast<size_t>(kRanks)) << "rank " << r;
    for (int k = 0; k < kRanks; ++k) EXPECT_EQ(seen[r][k], absl::StrCat("addr", k));
  }
}

TEST(TcpStoreTest, DeadlineExceededNamesTheMissingKeys) {
  std::unique_ptr<TcpStore> server = ServeOnFreePort();
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpStore> client = ConnectTo(server->port());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Set("present", "x").ok());
  for (TcpStore* store : {server.get(), client.get()}) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::vector<std::string>> values =
        store->Get({"present", "missing"}, absl::Now() + absl::Milliseconds(200));
    const absl::Duration took = absl::Now() - start;
    ASSERT_EQ(values.status().code(), absl::StatusCode::kDeadlineExceeded) << values.status();
    EXPECT_THAT(std::string(values.status().message()), HasSubstr("missing"));
    EXPECT_THAT(std::string(values.status().message()), Not(HasSubstr("present")));
    EXPECT_GE(took, absl::Milliseconds(150));
    EXPECT_LT(took, absl::Seconds(5));
  }
  // A deadline already past still answers from what is there.
  absl::StatusOr<std::vector<std::string>> now = client->Get({"present"}, absl::Now());
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(client->Wait({"missing"}, absl::Now()).code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(TcpStoreTest, ClientRetriesUntilTheServerStarts) {
  const int port = FreePort();
  std::unique_ptr<TcpStore> server;
  std::thread late_server([&] {
    absl::SleepFor(absl::Milliseconds(300));
    absl::StatusOr<std::unique_ptr<TcpStore>> s = TcpStore::Serve("127.0.0.1", port);
    ASSERT_TRUE(s.ok()) << s.status();
    server = std::move(*s);
    ASSERT_TRUE(server->Set("ready", "yes").ok());
  });
  absl::StatusOr<std::unique_ptr<TcpStore>> client =
      TcpStore::Connect("localhost", port, absl::Now() + absl::Seconds(20));
  late_server.join();
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::vector<std::string>> values =
      (*client)->Get({"ready"}, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_EQ(values->at(0), "yes");
}

TEST(TcpStoreTest, ConnectGivesUpAtTheDeadlineNamingTheAddress) {
  const int port = FreePort();
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<TcpStore>> client =
      TcpStore::Connect("127.0.0.1", port, absl::Now() + absl::Milliseconds(500));
  ASSERT_EQ(client.status().code(), absl::StatusCode::kDeadlineExceeded) << client.status();
  EXPECT_THAT(std::string(client.status().message()), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("refused"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(TcpStoreTest, ServeFailsOnAPortInUse) {
  std::unique_ptr<TcpStore> first = ServeOnFreePort();
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<TcpStore>> second = TcpStore::Serve("127.0.0.1", first->port());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", first->port())));
  EXPECT_EQ(TcpStore::Serve("127.0.0.1", 70000).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TcpStore::Connect("127.0.0.1", 0, absl::Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TcpStoreTest, RejectsOversizedKeysAndValues) {
  std::unique_ptr<TcpStore> server = ServeOnFreePort();
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpStore> client = ConnectTo(server->port());
  ASSERT_NE(client, nullptr);
  const std::string long_key(TcpStore::kMaxKeyBytes + 1, 'k');
  const std::string big_value(TcpStore::kMaxValueBytes + 1, 'v');
  for (TcpStore* store : {server.get(), client.get()}) {
    EXPECT_EQ(store->Set(long_key, "v").code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store->Set("k", big_value).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store->Get({long_key}, absl::Now()).status().code(),
              absl::StatusCode::kInvalidArgument);
    std::vector<std::string> too_many(TcpStore::kMaxKeysPerGet + 1, "k");
    EXPECT_EQ(store->Get(too_many, absl::Now()).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  // The largest allowed value goes through.
  const std::string max_value(TcpStore::kMaxValueBytes, 'm');
  ASSERT_TRUE(client->Set("max", max_value).ok());
  absl::StatusOr<std::vector<std::string>> got =
      client->Get({"max"}, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->at(0).size(), max_value.size());
}

// Each bad frame gets an INVALID_ARGUMENT reply naming the problem, then the connection closes;
// the server keeps serving everyone else.
TEST(TcpStoreTest, RejectsBadFrames) {
  std::unique_ptr<TcpStore> server = ServeOnFreePort();
  ASSERT_NE(server, nullptr);
  struct Case {
    std::string name;
    std::string bytes;
    std::string expected;
  };
  const std::string set_ok = std::string("S") + U32(1) + "k" + U32(1) + "v";
  const std::vector<Case> cases = {
      {"oversized length", U32(TcpStore::kMaxFrameBytes + 1), "exceeds the limit"},
      {"http probe", "GET / HTTP/1.1\r\n\r\n", "exceeds the limit"},
      {"empty payload", Framed(""), "truncated"},
      {"unknown op", Framed("X"), "unknown op"},
      {"truncated set", Framed(std::string("S") + U32(10) + "abc"), "truncated"},
      {"oversized key", Framed(std::string("S") + U32(TcpStore::kMaxKeyBytes + 1)),
       "key of 4097 bytes"},
      {"trailing bytes", Framed(set_ok + "junk"), "4 trailing bytes"},
      {"too many keys", Framed(std::string("G") + std::string(8, '\0') + U32(1u << 30)),
       "keys exceed the limit"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    RawConnection raw(server->port());
    ASSERT_TRUE(raw.connected());
    raw.Send(c.bytes);
    const std::string reply = raw.ReadUntilClosed(absl::Seconds(5));
    EXPECT_TRUE(raw.closed());
    ASSERT_GE(reply.size(), 5u);
    EXPECT_EQ(reply[4], static_cast<char>(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(reply, HasSubstr("bad frame"));
    EXPECT_THAT(reply, HasSubstr(c.expected));
  }
  // A well-formed frame by hand works, and the store still serves real clients.
  RawConnection raw(server->port());
  raw.Send(Framed(set_ok));
  absl::StatusOr<std::vector<std::string>> v = server->Get({"k"}, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->at(0), "v");
  std::unique_ptr<TcpStore> client = ConnectTo(server->port());
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Set("after", "1").ok());
}

TEST(TcpStoreTest, AStalledFrameIsDroppedAfterTheFrameTimeout) {
  TcpStoreOptions options;
  options.frame_timeout = absl::Milliseconds(200);
  std::unique_ptr<TcpStore> server = ServeOnFreePort(options);
  ASSERT_NE(server, nullptr);
  RawConnection raw(server->port());
  raw.Send(U32(100) + "only part of it");
  const absl::Time start = absl::Now();
  raw.ReadUntilClosed(absl::Seconds(5));
  EXPECT_TRUE(raw.closed());
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(TcpStoreTest, ClientsReconnectAfterTheServerDropsIdleConnections) {
  TcpStoreOptions options;
  options.idle_timeout = absl::Milliseconds(100);
  std::unique_ptr<TcpStore> server = ServeOnFreePort(options);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpStore> client = ConnectTo(server->port());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Set("a", "1").ok());
  absl::SleepFor(absl::Milliseconds(400));  // the pooled connection is closed by now
  ASSERT_TRUE(client->Set("b", "2").ok());
  absl::StatusOr<std::vector<std::string>> v =
      client->Get({"a", "b"}, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (std::vector<std::string>{"1", "2"}));
}

TEST(TcpStoreTest, StoppingTheServerEndsRemoteGetsPromptly) {
  std::unique_ptr<TcpStore> server = ServeOnFreePort();
  ASSERT_NE(server, nullptr);
  std::unique_ptr<TcpStore> client = ConnectTo(server->port());
  ASSERT_NE(client, nullptr);
  absl::Status remote;
  std::thread waiter(
      [&] { remote = client->Get({"never"}, absl::Now() + absl::Seconds(60)).status(); });
  absl::SleepFor(absl::Milliseconds(200));  // the Get is waiting on the server by now
  const absl::Time start = absl::Now();
  server.reset();
  const absl::Duration stop_took = absl::Now() - start;
  waiter.join();
  EXPECT_LT(stop_took, absl::Seconds(5));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_FALSE(remote.ok());
  EXPECT_NE(remote.code(), absl::StatusCode::kDeadlineExceeded) << remote;
}

}  // namespace
}  // namespace qsr
