#include "worker/comm/collective_fault_hook.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace qsr {
namespace {

std::atomic<bool> armed{false};

int64_t ParseKillRound() {
  const char* value = std::getenv("QSR_TEST_STOP_IN_COLLECTIVE");
  if (value == nullptr || *value == '\0') return -1;
  const std::string v(value);
  int64_t round = -1;
  if (!absl::StartsWith(v, "round:") || !absl::SimpleAtoi(v.substr(6), &round) || round < 0) {
    std::fprintf(stderr, "QSR_TEST_STOP_IN_COLLECTIVE=%s ignored: want round:N with N >= 0\n",
                 v.c_str());
    return -1;
  }
  std::fprintf(stderr,
               "test hook: this worker kills itself inside round %lld's averaging all-reduce "
               "(QSR_TEST_STOP_IN_COLLECTIVE)\n",
               static_cast<long long>(round));
  return round;
}

}  // namespace

int64_t CollectiveFaultHook::KillRound() {
  static const int64_t round = ParseKillRound();
  return round;
}

void CollectiveFaultHook::Arm() { armed.store(true); }

bool CollectiveFaultHook::TakeArmed() { return armed.exchange(false); }

void CollectiveFaultHook::Fire() {
  ::kill(::getpid(), SIGKILL);
  ::_exit(137);  // not reached
}

}  // namespace qsr
