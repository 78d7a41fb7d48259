// MakeOutcome and WithOutcome: the Outcome every coordinator reply carries, in one expression.
//
// Pure; thread-safe.
#ifndef QSR_COORDINATOR_OUTCOME_H_
#define QSR_COORDINATOR_OUTCOME_H_

#include <string>

#include "qsr/v1/coordinator.pb.h"

namespace qsr {

inline v1::Outcome MakeOutcome(v1::Outcome::Code code, const std::string& message) {
  v1::Outcome o;
  o.set_code(code);
  o.set_message(message);
  return o;
}

// A reply of type `Reply` that carries only its outcome.
template <typename Reply>
Reply WithOutcome(v1::Outcome::Code code, const std::string& message) {
  Reply reply;
  *reply.mutable_outcome() = MakeOutcome(code, message);
  return reply;
}

}  // namespace qsr

#endif  // QSR_COORDINATOR_OUTCOME_H_
