#include "worker/comm/c10d_store.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace qsr {
namespace {

// c10d's message without LibTorch's backtrace.
std::string Message(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  std::string what = e.what();
  if (const size_t cut = what.find("\nException raised from"); cut != std::string::npos) {
    what.resize(cut);
  }
  return what;
}

// c10d reads a zero timeout as "wait forever", so a deadline that has passed still waits 1 ms.
std::chrono::milliseconds Until(absl::Time deadline) {
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return std::chrono::milliseconds(std::max<int64_t>(ms, 1));
}

std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(std::max<int64_t>(absl::ToInt64Milliseconds(d), 1));
}

std::string Address(const std::string& host, int port) {
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                             : absl::StrCat(host, ":", port);
}

}  // namespace

C10dStore::C10dStore(std::unique_ptr<c10d::TCPStore> store, std::string address)
    : store_(std::move(store)), address_(std::move(address)) {}

C10dStore::~C10dStore() = default;

absl::StatusOr<std::unique_ptr<C10dStore>> C10dStore::Serve(const std::string& host, int port,
                                                            absl::Duration op_timeout) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("store port ", port, " is not in [0, 65535] (0: the OS chooses)"));
  }
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(port);
  options.isServer = true;
  options.waitWorkers = false;  // the group's own barrier meets the peers, with its deadline
  options.multiTenant = true;   // as torch.distributed's env:// rank 0
  options.timeout = Millis(op_timeout);
  // The server listens on every local address; the host is where its own client connects.
  const std::string connect_host = host.empty() ? "127.0.0.1" : host;
  try {
    auto store = std::make_unique<c10d::TCPStore>(connect_host, options);
    const std::string address = Address(connect_host, store->getPort());
    return std::unique_ptr<C10dStore>(new C10dStore(std::move(store), address));
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("serving the c10d TCPStore on port ", port, ": ", Message(e)));
  }
}

absl::StatusOr<std::unique_ptr<C10dStore>> C10dStore::Connect(const std::string& host, int port,
                                                              absl::Time deadline,
                                                              absl::Duration op_timeout) {
  if (host.empty() || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("store address \"", host, "\" port ", port,
                                                   ": need a host and a port in [1, 65535]"));
  }
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(port);
  options.isServer = false;
  options.waitWorkers = false;
  options.timeout = Until(deadline);  // c10d retries connecting within this
  const std::string address = Address(host, port);
  try {
    auto store = std::make_unique<c10d::TCPStore>(host, options);
    store->setTimeout(Millis(op_timeout));
    return std::unique_ptr<C10dStore>(new C10dStore(std::move(store), address));
  } catch (const std::exception& e) {
    const std::string message =
        absl::StrCat("connecting to the c10d TCPStore at ", address, ": ", Message(e));
    // c10d gives up connecting when its timeout (the time to the deadline) runs out.
    if (absl::Now() >= deadline - absl::Milliseconds(100) ||
        message.find("timed out") != std::string::npos) {
      return absl::DeadlineExceededError(message);
    }
    return absl::UnavailableError(message);
  }
}

int C10dStore::port() const { return store_->getPort(); }

absl::Status C10dStore::Set(const std::string& key, const std::string& value) {
  try {
    store_->set(key, std::vector<uint8_t>(value.begin(), value.end()));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("c10d TCPStore at ", address_, ": setting \"", key, "\": ", Message(e)));
  }
}

absl::Status C10dStore::Wait(const std::vector<std::string>& keys, absl::Time deadline) {
  if (keys.empty()) return absl::OkStatus();
  try {
    store_->wait(keys, Until(deadline));
    return absl::OkStatus();
  } catch (const std::exception& e) {
    const std::string why = Message(e);
    // Which keys are missing: each check is one short round trip, no wait.
    std::vector<std::string> missing;
    try {
      for (const std::string& key : keys) {
        if (!store_->check({key})) missing.push_back(key);
      }
    } catch (const std::exception&) {
      return absl::UnavailableError(
          absl::StrCat("c10d TCPStore at ", address_, ": waiting for keys: ", why));
    }
    if (!missing.empty() && absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("c10d TCPStore at ", address_, ": deadline passed waiting for ",
                       missing.size(), " of ", keys.size(), " keys: ",
                       absl::StrJoin(missing.begin(),
                                     missing.begin() + std::min<size_t>(missing.size(), 8), ", "),
                       missing.size() > 8 ? ", ..." : ""));
    }
    if (missing.empty()) return absl::OkStatus();  // set just as the wait gave up
    return absl::UnavailableError(
        absl::StrCat("c10d TCPStore at ", address_, ": waiting for keys: ", why));
  }
}

absl::StatusOr<std::vector<std::string>> C10dStore::Get(const std::vector<std::string>& keys,
                                                        absl::Time deadline) {
  if (absl::Status s = Wait(keys, deadline); !s.ok()) return s;
  std::vector<std::string> values;
  values.reserve(keys.size());
  try {
    for (const std::string& key : keys) {
      const std::vector<uint8_t> v = store_->get(key);  // present: no wait
      values.emplace_back(v.begin(), v.end());
    }
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("c10d TCPStore at ", address_, ": reading keys: ", Message(e)));
  }
  return values;
}

}  // namespace qsr
