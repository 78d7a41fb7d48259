#include "worker/comm/gloo_store.h"

#include <algorithm>
#include <utility>

namespace qsr {

GlooStore::GlooStore(qsr::Store* store, absl::Duration default_timeout, absl::Time deadline)
    : store_(store), default_timeout_(default_timeout), deadline_(deadline) {}

absl::Time GlooStore::DeadlineFor(std::chrono::milliseconds timeout) const {
  const absl::Duration d = timeout.count() > 0 ? absl::FromChrono(timeout) : default_timeout_;
  return std::min(absl::Now() + d, deadline_);
}

void GlooStore::set(const std::string& key, const std::vector<char>& data) {
  absl::Status status = store_->Set(key, std::string(data.begin(), data.end()));
  if (!status.ok()) throw GlooStoreError(std::move(status));
}

std::vector<char> GlooStore::get(const std::string& key) {
  auto values = store_->Get({key}, DeadlineFor(std::chrono::milliseconds::zero()));
  if (!values.ok()) throw GlooStoreError(values.status());
  if (values->size() != 1) {
    throw GlooStoreError(absl::InternalError("store returned " + std::to_string(values->size()) +
                                             " values for key " + key));
  }
  const std::string& value = values->front();
  return std::vector<char>(value.begin(), value.end());
}

void GlooStore::wait(const std::vector<std::string>& keys) {
  wait(keys, std::chrono::milliseconds::zero());
}

void GlooStore::wait(const std::vector<std::string>& keys,
                     const std::chrono::milliseconds& timeout) {
  absl::Status status = store_->Wait(keys, DeadlineFor(timeout));
  if (!status.ok()) throw GlooStoreError(std::move(status));
}

}  // namespace qsr
