#include "common/tcp_store.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace qsr {
namespace {

constexpr uint8_t kOpSet = 'S';
constexpr uint8_t kOpGet = 'G';
// The longest one Get waits, whatever its deadline: keeps the wire's u64 and the server's wait
// finite even for a caller that passes absl::InfiniteFuture().
constexpr absl::Duration kMaxWait = absl::Hours(24);
// The server answers a Get at its deadline, so the client waits a little longer for that answer.
constexpr absl::Duration kReplyGrace = absl::Seconds(5);
// Even a Get whose deadline has passed gets this long to connect and ask (the keys may be there).
constexpr absl::Duration kMinIoTime = absl::Seconds(1);
// One connect attempt's bound, so that a black-holed address does not use up the whole deadline
// before the next address (or retry) is tried.
constexpr absl::Duration kConnectAttempt = absl::Seconds(5);
constexpr size_t kMaxMessageBytes = 64 * 1024;
constexpr size_t kMaxIdleConnections = 4;

std::string ErrnoText(int err) {
  char buf[256];
  return ::strerror_r(err, buf, sizeof(buf));  // GNU variant: returns the message.
}

int PollTimeoutMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  // Long waits are re-armed by the callers' loops; this keeps the int from overflowing.
  if (left >= absl::Hours(1)) return 3600 * 1000;
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
}

// Waits until `fd` is ready for `events` (or has an error or hangup, which the next I/O call
// reports), `wake_fd` (if >= 0) is readable, or the deadline passes.
absl::Status WaitFd(int fd, short events, absl::Time deadline, int wake_fd) {
  while (true) {
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};  // poll ignores a negative fd
    const int n = ::poll(fds, 2, PollTimeoutMs(deadline));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("poll: ", ErrnoText(errno)));
    }
    if (fds[1].revents != 0) return absl::CancelledError("store server is shutting down");
    if (fds[0].revents != 0) return absl::OkStatus();
    if (absl::Now() >= deadline) return absl::DeadlineExceededError("timed out");
  }
}

absl::Status SendAll(int fd, absl::string_view data, absl::Time deadline, int wake_fd) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (absl::Status s = WaitFd(fd, POLLOUT, deadline, wake_fd); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(absl::StrCat("send: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

absl::Status RecvAll(int fd, char* out, size_t size, absl::Time deadline, int wake_fd) {
  while (size > 0) {
    const ssize_t n = ::recv(fd, out, size, 0);
    if (n > 0) {
      out += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return absl::UnavailableError("connection closed by the peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (absl::Status s = WaitFd(fd, POLLIN, deadline, wake_fd); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(absl::StrCat("recv: ", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

void PutU32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutU64(std::string& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void PutBytes(std::string& out, absl::string_view bytes) {
  PutU32(out, static_cast<uint32_t>(bytes.size()));
  out.append(bytes.data(), bytes.size());
}

uint64_t GetBigEndian(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string Frame(absl::string_view payload) {
  std::string frame;
  frame.reserve(4 + payload.size());
  PutU32(frame, static_cast<uint32_t>(payload.size()));
  frame.append(payload.data(), payload.size());
  return frame;
}

// Reads one frame: waits for its first byte until `first_byte_deadline` (a connection may idle
// between frames), then for the rest until `frame_timeout` later. INVALID_ARGUMENT for a frame
// over the size limit.
absl::StatusOr<std::string> ReadFrame(int fd, absl::Time first_byte_deadline,
                                      absl::Duration frame_timeout, int wake_fd) {
  char header[4];
  if (absl::Status s = RecvAll(fd, header, 1, first_byte_deadline, wake_fd); !s.ok()) return s;
  const absl::Time deadline = absl::Now() + frame_timeout;
  if (absl::Status s = RecvAll(fd, header + 1, 3, deadline, wake_fd); !s.ok()) return s;
  const uint64_t size = GetBigEndian(header, 4);
  if (size > TcpStore::kMaxFrameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad frame: length ", size, " exceeds the limit of ", TcpStore::kMaxFrameBytes, " bytes"));
  }
  std::string payload(size, '\0');
  if (absl::Status s = RecvAll(fd, payload.data(), size, deadline, wake_fd); !s.ok()) return s;
  return payload;
}

// Bounds-checked parsing of a payload; every failure is a "bad frame" INVALID_ARGUMENT.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}

  absl::Status U8(uint8_t* v) { return Fixed(1, v); }
  absl::Status U32(uint32_t* v) { return Fixed(4, v); }
  absl::Status U64(uint64_t* v) { return Fixed(8, v); }

  // A u32 length and that many bytes; `what` names the field in errors.
  absl::Status Bytes(size_t max, const char* what, std::string* out) {
    uint32_t size = 0;
    if (absl::Status s = U32(&size); !s.ok()) return s;
    if (size > max) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad frame: ", what, " of ", size, " bytes exceeds the limit of ", max));
    }
    if (size > data_.size()) return Truncated();
    out->assign(data_.data(), size);
    data_.remove_prefix(size);
    return absl::OkStatus();
  }

  absl::Status End() const {
    if (data_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("bad frame: ", data_.size(), " trailing bytes"));
  }

 private:
  template <typename T>
  absl::Status Fixed(int bytes, T* v) {
    if (data_.size() < static_cast<size_t>(bytes)) return Truncated();
    *v = static_cast<T>(GetBigEndian(data_.data(), bytes));
    data_.remove_prefix(bytes);
    return absl::OkStatus();
  }
  static absl::Status Truncated() { return absl::InvalidArgumentError("bad frame: truncated"); }

  absl::string_view data_;
};

absl::Status CheckKey(const std::string& key) {
  if (key.size() > TcpStore::kMaxKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store: key of ", key.size(), " bytes exceeds the limit of ", TcpStore::kMaxKeyBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckSet(const std::string& key, const std::string& value) {
  if (absl::Status s = CheckKey(key); !s.ok()) return s;
  if (value.size() > TcpStore::kMaxValueBytes) {
    return absl::InvalidArgumentError(absl::StrCat("store: value of ", value.size(),
                                                   " bytes for key ", key, " exceeds the limit of ",
                                                   TcpStore::kMaxValueBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckGet(const std::vector<std::string>& keys) {
  if (keys.size() > TcpStore::kMaxKeysPerGet) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store: ", keys.size(), " keys in one Get exceed the limit of ", TcpStore::kMaxKeysPerGet));
  }
  for (const std::string& key : keys) {
    if (absl::Status s = CheckKey(key); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string ErrorReply(const absl::Status& status) {
  std::string reply(1, static_cast<char>(status.code()));
  PutBytes(reply, status.message().substr(0, kMaxMessageBytes));
  return reply;
}

std::string SetRequest(const std::string& key, const std::string& value) {
  std::string request(1, static_cast<char>(kOpSet));
  PutBytes(request, key);
  PutBytes(request, value);
  return request;
}

std::string GetRequest(const std::vector<std::string>& keys, absl::Duration timeout) {
  std::string request(1, static_cast<char>(kOpGet));
  PutU64(request, static_cast<uint64_t>(absl::ToInt64Milliseconds(timeout)));
  PutU32(request, static_cast<uint32_t>(keys.size()));
  for (const std::string& key : keys) PutBytes(request, key);
  return request;
}

// The status a reply carries; on OK, `reader` is left at the rest of the payload.
absl::Status ParseReplyStatus(Reader& reader) {
  uint8_t code = 0;
  if (absl::Status s = reader.U8(&code); !s.ok()) return s;
  if (code == 0) return absl::OkStatus();
  if (code > static_cast<uint8_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::InvalidArgumentError(absl::StrCat("bad frame: unknown status code ", code));
  }
  std::string message;
  if (absl::Status s = reader.Bytes(kMaxMessageBytes, "message", &message); !s.ok()) return s;
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

std::string Address(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

void SetNoDelay(int fd) {
  const int one = 1;
  // Requests are tiny and latency-bound; a failure here only costs latency.
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

// The key-value data, shared by the server's own calls and its connection threads.
struct TcpStore::Table {
  absl::Mutex mu;
  std::map<std::string, std::string> data ABSL_GUARDED_BY(mu);
  size_t bytes ABSL_GUARDED_BY(mu) = 0;
  bool stopping ABSL_GUARDED_BY(mu) = false;

  absl::Status Set(const std::string& key, const std::string& value) {
    if (absl::Status s = CheckSet(key, value); !s.ok()) return s;
    absl::MutexLock lock(&mu);
    if (stopping) return absl::UnavailableError("store server is shutting down");
    auto it = data.find(key);
    const size_t old_bytes = it == data.end() ? 0 : key.size() + it->second.size();
    const size_t new_bytes = bytes - old_bytes + key.size() + value.size();
    if (new_bytes > kMaxStoredBytes) {
      return absl::ResourceExhaustedError(absl::StrCat("store: setting key ", key,
                                                       " would exceed the table limit of ",
                                                       kMaxStoredBytes, " bytes"));
    }
    data[key] = value;
    bytes = new_bytes;
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> Get(const std::vector<std::string>& keys,
                                               absl::Time deadline) {
    if (absl::Status s = CheckGet(keys); !s.ok()) return s;
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (stopping) return true;
      for (const std::string& k : keys) {
        if (data.count(k) == 0) return false;
      }
      return true;
    };
    absl::MutexLock lock(&mu);
    const bool done = mu.AwaitWithDeadline(absl::Condition(&ready), deadline);
    if (stopping) return absl::UnavailableError("store server is shutting down");
    if (!done) {
      std::vector<std::string> missing;
      for (const std::string& k : keys) {
        if (data.count(k) == 0) missing.push_back(k);
      }
      return absl::DeadlineExceededError("store: timed out waiting for keys: " +
                                         absl::StrJoin(missing, ", "));
    }
    std::vector<std::string> values;
    values.reserve(keys.size());
    for (const std::string& k : keys) values.push_back(data[k]);
    return values;
  }

  void Stop() {
    absl::MutexLock lock(&mu);
    stopping = true;
  }
};

struct TcpStore::Server {
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  TcpStoreOptions options;
  Table table;
  int listen_fd = -1;
  // Written once, on shutdown, and never drained: every poll in the server also watches the read
  // end, so one byte wakes the acceptor and every connection thread.
  int wake_read = -1;
  int wake_write = -1;
  std::thread acceptor;
  // Touched only by the acceptor thread (and by the destructor after joining it).
  std::list<std::unique_ptr<Connection>> connections;

  ~Server() {
    table.Stop();
    if (wake_write >= 0) {
      const char byte = 'x';
      (void)!::write(wake_write, &byte, 1);
    }
    if (acceptor.joinable()) acceptor.join();
    if (listen_fd >= 0) ::close(listen_fd);
    if (wake_read >= 0) ::close(wake_read);
    if (wake_write >= 0) ::close(wake_write);
  }

  void Reap(bool all) {
    for (auto it = connections.begin(); it != connections.end();) {
      if (all || (*it)->done.load()) {
        (*it)->thread.join();
        ::close((*it)->fd);
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
  }

  void AcceptLoop() {
    while (true) {
      pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_read, POLLIN, 0}};
      // Wakes at least once a second to reap finished connections.
      const int n = ::poll(fds, 2, 1000);
      if (fds[1].revents != 0) break;
      Reap(/*all=*/false);
      if (n <= 0 || (fds[0].revents & POLLIN) == 0) continue;
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        // EAGAIN or an aborted connection; for EMFILE and friends, don't spin.
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED && errno != EINTR) {
          absl::SleepFor(absl::Milliseconds(10));
        }
        continue;
      }
      if (connections.size() >= static_cast<size_t>(kMaxConnections)) {
        ::close(fd);  // The client sees the connection closed and retries until its deadline.
        continue;
      }
      SetNoDelay(fd);
      auto c = std::make_unique<Connection>();
      c->fd = fd;
      try {
        c->thread = std::thread(&Server::Serve, this, c.get());
      } catch (const std::system_error&) {
        ::close(fd);
        continue;
      }
      connections.push_back(std::move(c));
    }
    Reap(/*all=*/true);
  }

  void Serve(Connection* c) {
    while (true) {
      absl::StatusOr<std::string> request =
          ReadFrame(c->fd, absl::Now() + options.idle_timeout, options.frame_timeout, wake_read);
      if (!request.ok()) {
        if (absl::IsInvalidArgument(request.status())) {
          (void)SendAll(c->fd, Frame(ErrorReply(request.status())), absl::Now() + absl::Seconds(1),
                        wake_read);
        }
        break;  // A bad frame, the peer gone, an idle connection or shutdown.
      }
      bool close_after = false;
      const std::string reply = Handle(*request, &close_after);
      if (!SendAll(c->fd, Frame(reply), absl::Now() + options.frame_timeout, wake_read).ok()) {
        break;
      }
      if (close_after) break;
    }
    // Shut down now so the peer sees the end at once; the acceptor closes the fd when it reaps.
    ::shutdown(c->fd, SHUT_RDWR);
    c->done.store(true);
  }

  // The reply payload for one request. A frame that does not parse gets INVALID_ARGUMENT and
  // `*close_after`: after a framing error the stream cannot be trusted.
  std::string Handle(const std::string& request, bool* close_after) {
    Reader reader(request);
    auto bad = [&](const absl::Status& s) {
      *close_after = true;
      return ErrorReply(s);
    };
    uint8_t op = 0;
    if (absl::Status s = reader.U8(&op); !s.ok()) return bad(s);
    if (op == kOpSet) {
      std::string key, value;
      absl::Status s = reader.Bytes(kMaxKeyBytes, "key", &key);
      if (s.ok()) s = reader.Bytes(kMaxValueBytes, "value", &value);
      if (s.ok()) s = reader.End();
      if (!s.ok()) return bad(s);
      s = table.Set(key, value);
      return s.ok() ? std::string(1, '\0') : ErrorReply(s);
    }
    if (op == kOpGet) {
      uint64_t timeout_ms = 0;
      uint32_t count = 0;
      absl::Status s = reader.U64(&timeout_ms);
      if (s.ok()) s = reader.U32(&count);
      if (s.ok() && count > kMaxKeysPerGet) {
        s = absl::InvalidArgumentError(
            absl::StrCat("bad frame: ", count, " keys exceed the limit of ", kMaxKeysPerGet));
      }
      std::vector<std::string> keys(s.ok() ? count : 0);
      for (size_t i = 0; s.ok() && i < keys.size(); ++i) {
        s = reader.Bytes(kMaxKeyBytes, "key", &keys[i]);
      }
      if (s.ok()) s = reader.End();
      if (!s.ok()) return bad(s);
      const absl::Duration timeout =
          std::min(absl::Milliseconds(std::min<uint64_t>(timeout_ms, INT64_MAX)), kMaxWait);
      absl::StatusOr<std::vector<std::string>> values = table.Get(keys, absl::Now() + timeout);
      if (!values.ok()) return ErrorReply(values.status());
      std::string reply(1, '\0');
      PutU32(reply, static_cast<uint32_t>(values->size()));
      for (const std::string& v : *values) PutBytes(reply, v);
      if (reply.size() > kMaxFrameBytes) {
        return ErrorReply(absl::ResourceExhaustedError(
            absl::StrCat("store: the reply of ", reply.size(), " bytes exceeds the frame limit of ",
                         kMaxFrameBytes, "; get fewer keys at a time")));
      }
      return reply;
    }
    return bad(
        absl::InvalidArgumentError(absl::StrCat("bad frame: unknown op ", static_cast<int>(op))));
  }
};

struct TcpStore::Client {
  std::string host;
  int port = 0;
  TcpStoreOptions options;
  absl::Mutex mu;
  std::vector<int> idle ABSL_GUARDED_BY(mu);  // Connected, between calls.

  ~Client() {
    absl::MutexLock lock(&mu);
    for (int fd : idle) ::close(fd);
  }

  std::string address() const { return Address(host, port); }

  // Connects, retrying with backoff while the server refuses (or cannot be resolved yet).
  absl::StatusOr<int> Dial(absl::Time deadline) {
    absl::Duration backoff = absl::Milliseconds(50);
    std::string last_error = "no attempt";
    const std::string service = std::to_string(port);
    while (true) {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      if (rc != 0) {
        last_error = absl::StrCat("resolving ", host, ": ", ::gai_strerror(rc));
      }
      for (addrinfo* ai = rc == 0 ? found : nullptr; ai != nullptr; ai = ai->ai_next) {
        const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                ai->ai_protocol);
        if (fd < 0) {
          last_error = absl::StrCat("socket: ", ErrnoText(errno));
          continue;
        }
        int err = 0;
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) err = errno;
        if (err == EINPROGRESS) {
          const absl::Time attempt_deadline = std::min(deadline, absl::Now() + kConnectAttempt);
          if (WaitFd(fd, POLLOUT, attempt_deadline, -1).ok()) {
            socklen_t len = sizeof(err);
            if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
          } else {
            err = ETIMEDOUT;
          }
        }
        if (err == 0) {
          ::freeaddrinfo(found);
          SetNoDelay(fd);
          return fd;
        }
        last_error = absl::StrCat("connect: ", ErrnoText(err));
        ::close(fd);
      }
      if (found != nullptr) ::freeaddrinfo(found);
      if (absl::Now() + backoff > deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("store: could not connect to ", address(),
                         " before the deadline; last error: ", last_error));
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(1));
    }
  }

  // Sends one request and returns the reply's payload. `io_deadline` bounds connecting and
  // sending, `reply_deadline` the wait for the answer.
  absl::StatusOr<std::string> Call(const std::string& request, absl::Time io_deadline,
                                   absl::Time reply_deadline) {
    const std::string frame = Frame(request);
    while (true) {
      int fd = -1;
      bool reused = false;
      {
        absl::MutexLock lock(&mu);
        if (!idle.empty()) {
          fd = idle.back();
          idle.pop_back();
          reused = true;
        }
      }
      if (fd < 0) {
        absl::StatusOr<int> dialed = Dial(io_deadline);
        if (!dialed.ok()) return dialed.status();
        fd = *dialed;
      }
      absl::StatusOr<std::string> reply = [&]() -> absl::StatusOr<std::string> {
        if (absl::Status s = SendAll(fd, frame, io_deadline, -1); !s.ok()) return s;
        return ReadFrame(fd, reply_deadline, options.frame_timeout, -1);
      }();
      if (reply.ok()) {
        absl::MutexLock lock(&mu);
        if (idle.size() < kMaxIdleConnections) {
          idle.push_back(fd);
          fd = -1;
        }
      }
      if (fd >= 0) ::close(fd);
      if (reply.ok()) return reply;
      // A pooled connection may have been closed by the server while it sat idle: try again
      // (Set and Get are idempotent). Each retry uses up one pooled connection, so this ends.
      if (reused && !absl::IsDeadlineExceeded(reply.status())) continue;
      if (absl::IsDeadlineExceeded(reply.status())) {
        return absl::DeadlineExceededError(
            absl::StrCat("store: no reply from ", address(), " before the deadline"));
      }
      return absl::UnavailableError(absl::StrCat("store: lost the connection to ", address(), ": ",
                                                 reply.status().message()));
    }
  }
};

TcpStore::TcpStore() = default;

TcpStore::~TcpStore() {
  // Stops the server first: its connection threads may be blocked in waits on the table.
  server_.reset();
  client_.reset();
}

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::Serve(const std::string& bind_host, int port,
                                                          const TcpStoreOptions& options) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store: port ", port, " is not in [0, 65535]"));
  }
  const std::string shown = Address(bind_host.empty() ? "*" : bind_host, port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(bind_host.empty() ? nullptr : bind_host.c_str(), service.c_str(),
                               &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("store: cannot serve on ", shown, ": ", ::gai_strerror(rc)));
  }
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = absl::StrCat("socket: ", ErrnoText(errno));
      continue;
    }
    // A restarted rank 0 can rebind its port while old connections linger in TIME_WAIT.
    const int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      last_error = ErrnoText(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("store: cannot serve on ", shown, ": ", last_error));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  int bound_port = port;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    if (bound.ss_family == AF_INET) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    } else if (bound.ss_family == AF_INET6) {
      bound_port = ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
    }
  }

  auto server = std::make_unique<Server>();
  server->options = options;
  server->listen_fd = fd;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::UnavailableError(absl::StrCat("store: pipe: ", ErrnoText(errno)));
  }
  server->wake_read = pipe_fds[0];
  server->wake_write = pipe_fds[1];
  try {
    server->acceptor = std::thread(&Server::AcceptLoop, server.get());
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("store: cannot start a thread: ", e.what()));
  }
  std::unique_ptr<TcpStore> store(new TcpStore());
  store->port_ = bound_port;
  store->server_ = std::move(server);
  return store;
}

absl::StatusOr<std::unique_ptr<TcpStore>> TcpStore::Connect(const std::string& host, int port,
                                                            absl::Time deadline,
                                                            const TcpStoreOptions& options) {
  if (host.empty()) return absl::InvalidArgumentError("store: empty host");
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store: port ", port, " is not in [1, 65535]"));
  }
  auto client = std::make_unique<Client>();
  client->host = host;
  client->port = port;
  client->options = options;
  // Connect now, so that an unreachable server shows here rather than at the first Set.
  absl::StatusOr<int> fd = client->Dial(deadline);
  if (!fd.ok()) return fd.status();
  {
    absl::MutexLock lock(&client->mu);
    client->idle.push_back(*fd);
  }
  std::unique_ptr<TcpStore> store(new TcpStore());
  store->port_ = port;
  store->client_ = std::move(client);
  return store;
}

absl::Status TcpStore::Set(const std::string& key, const std::string& value) {
  if (server_) return server_->table.Set(key, value);
  if (absl::Status s = CheckSet(key, value); !s.ok()) return s;
  const absl::Time deadline = absl::Now() + client_->options.connect_timeout;
  absl::StatusOr<std::string> reply = client_->Call(SetRequest(key, value), deadline, deadline);
  if (!reply.ok()) return reply.status();
  Reader reader(*reply);
  if (absl::Status s = ParseReplyStatus(reader); !s.ok()) return s;
  return reader.End();
}

absl::StatusOr<std::vector<std::string>> TcpStore::Get(const std::vector<std::string>& keys,
                                                       absl::Time deadline) {
  if (server_) return server_->table.Get(keys, deadline);
  if (absl::Status s = CheckGet(keys); !s.ok()) return s;
  const absl::Time now = absl::Now();
  const absl::Duration timeout = std::clamp(deadline - now, absl::ZeroDuration(), kMaxWait);
  const absl::Time io_deadline = std::max(deadline, now + kMinIoTime);
  absl::StatusOr<std::string> reply =
      client_->Call(GetRequest(keys, timeout), io_deadline, now + timeout + kReplyGrace);
  if (!reply.ok()) {
    if (absl::IsDeadlineExceeded(reply.status())) {
      return absl::DeadlineExceededError(absl::StrCat(
          reply.status().message(), " while waiting for keys: ", absl::StrJoin(keys, ", ")));
    }
    return reply.status();
  }
  Reader reader(*reply);
  if (absl::Status s = ParseReplyStatus(reader); !s.ok()) return s;
  uint32_t count = 0;
  if (absl::Status s = reader.U32(&count); !s.ok()) return s;
  if (count != keys.size()) {
    return absl::InternalError(
        absl::StrCat("store: bad reply: ", count, " values for ", keys.size(), " keys"));
  }
  std::vector<std::string> values(count);
  for (std::string& v : values) {
    if (absl::Status s = reader.Bytes(kMaxValueBytes, "value", &v); !s.ok()) return s;
  }
  if (absl::Status s = reader.End(); !s.ok()) return s;
  return values;
}

}  // namespace qsr
