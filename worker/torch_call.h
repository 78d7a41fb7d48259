// Runs LibTorch code and turns its exceptions into an absl::Status, so none escapes the worker's
// API. c10::Error messages lose their backtrace: a person reads them.
#ifndef QSR_WORKER_TORCH_CALL_H_
#define QSR_WORKER_TORCH_CALL_H_

#include <c10/util/Exception.h>

#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsr {

template <typename Fn>
absl::Status TorchCall(const char* what, Fn&& fn,
                       absl::StatusCode code = absl::StatusCode::kInternal) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const c10::Error& e) {
    return absl::Status(code, absl::StrCat(what, ": ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::Status(code, absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace qsr

#endif  // QSR_WORKER_TORCH_CALL_H_
