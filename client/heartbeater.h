// Heartbeater: a thread of its own that tells the coordinator a worker is alive, every interval,
// and says when the coordinator answers that the worker's generation (or the run) has ended.
//
// It beats from its own thread so that a long local round (no coordinator call for minutes) does
// not look like a dead worker, and so that a worker blocked in a collective with a dead or stopped
// peer learns of the failure and can abort that collective.
//
// Transport errors (the coordinator restarting, a network blip) are logged and retried at the
// next beat: only the coordinator's answer ends a generation.
//
// Thread-safe. Lifecycle: construct, SetIdentity() after every Join, Stop() (or destroy) at the
// end; the callback runs on the heartbeat thread, at most once per generation.
#ifndef QSR_CLIENT_HEARTBEATER_H_
#define QSR_CLIENT_HEARTBEATER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/coordinator_client.h"

namespace qsr {

class Heartbeater {
 public:
  // Called with the generation that ended and the coordinator's outcome (GENERATION_ENDED,
  // RUN_FINISHED or RUN_FAILED).
  using OnEnded = std::function<void(int64_t generation, const v1::Outcome& outcome)>;

  // `client` must outlive the Heartbeater.
  Heartbeater(CoordinatorClient* client, OnEnded on_ended);
  ~Heartbeater();

  // Beats for this member from now on (the first beat goes out at once).
  void SetIdentity(const std::string& worker_id, int rank, int64_t generation,
                   absl::Duration interval);
  // The step the worker is training, sent with each beat.
  void SetStep(int64_t step);
  void Stop();

 private:
  void Loop();

  CoordinatorClient* const client_;
  const OnEnded on_ended_;
  absl::Mutex mu_;
  v1::HeartbeatRequest request_ ABSL_GUARDED_BY(mu_);
  absl::Duration interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t reported_generation_ = -1;  // owned by the thread
  std::thread thread_;
};

}  // namespace qsr

#endif  // QSR_CLIENT_HEARTBEATER_H_
