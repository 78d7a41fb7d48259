// ReportSender: delivers round and evaluation reports to the coordinator off the training thread.
//
// The training loop never waits on a report: Add* queues and returns. A background thread sends
// what has queued about once per `interval` (0.75-1.25 of it at random, common/backoff.h, so that
// the senders of a group spread out), so data-parallel training with one-step rounds costs one RPC
// per interval, not one per step. A failed send keeps the reports and retries at the next
// interval. Flush() sends everything left, bounded by a deadline.
//
// Thread-safe. The client must outlive the sender.
#ifndef QSR_CLIENT_REPORT_SENDER_H_
#define QSR_CLIENT_REPORT_SENDER_H_

#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/coordinator_client.h"

namespace qsr {

class ReportSender {
 public:
  ReportSender(CoordinatorClient* client, v1::ReportRequest identity,
               absl::Duration interval = absl::Seconds(1));
  ~ReportSender();  // Stops without flushing; call Flush first.

  void AddRound(v1::RoundReport report);
  void AddEval(v1::EvalReport report);
  void AddCheckpoint(v1::CheckpointReport report);
  // Sends everything queued; returns the last send error if it could not by the deadline.
  absl::Status Flush(absl::Time deadline);

 private:
  void Loop();
  // Sends the queue once; called without mu_ held.
  absl::Status SendOnce();

  CoordinatorClient* const client_;
  const v1::ReportRequest identity_;  // worker_id, rank, generation
  const absl::Duration interval_;

  absl::Mutex mu_;
  v1::ReportRequest queued_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  absl::Mutex send_mu_;  // one send at a time
  std::thread thread_;
};

}  // namespace qsr

#endif  // QSR_CLIENT_REPORT_SENDER_H_
