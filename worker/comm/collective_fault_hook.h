// CollectiveFaultHook: a test hook that kills this worker process inside an averaging all-reduce,
// so that tests can fail a worker at exactly that point (its peers are mid-collective, part of its
// data already sent) instead of at some time after a round.
//
// Inert unless the environment variable QSR_TEST_STOP_IN_COLLECTIVE is set when the process
// starts. Its value `round:N` (N >= 0) makes the worker raise SIGKILL on itself during round N's
// model averaging: the trainer arms the hook right before that round's Average(), and
// GlooCommunicator's averaging all-reduce fires it at its first reduction, i.e. after this rank
// sent its first ring segment and received one from its neighbour. Any other value is ignored
// with a warning. Only the synchronous Gloo averaging path (sync_overlap 0, CPU) fires it.
//
// Thread-safe: the armed flag is atomic; Armed() consumes it.
#ifndef QSR_WORKER_COMM_COLLECTIVE_FAULT_HOOK_H_
#define QSR_WORKER_COMM_COLLECTIVE_FAULT_HOOK_H_

#include <cstdint>

namespace qsr {

class CollectiveFaultHook {
 public:
  // The round whose averaging kills the process, or -1 (the hook is off: the normal case).
  static int64_t KillRound();
  // Arms the hook for the next averaging all-reduce of this process.
  static void Arm();
  // True once after Arm(): the caller is inside the collective and should call Fire().
  static bool TakeArmed();
  // Raises SIGKILL on this process; does not return.
  [[noreturn]] static void Fire();
};

}  // namespace qsr

#endif  // QSR_WORKER_COMM_COLLECTIVE_FAULT_HOOK_H_
