// libFuzzer target: arbitrary bytes, read as a sequence of coordinator requests, fed to the
// handlers' logic in the order CoordinatorService runs it — the TokenGuard, the request
// validator, then the RunController (a small recipe) or the KvStore. Nothing may crash, hang or
// touch freed memory (ASan), and every accepted waiting call (NextRounds, KvGet) must be answered
// exactly once by the end of the input, when the clock is run past every deadline.
//
// Input format: records of [tag: 1 byte][length: 1 byte][length bytes]. The low 4 bits of the tag
// choose the RPC, the high 4 bits advance the simulated clock by that many seconds; the bytes are
// parsed as the RPC's request message (records that do not parse are skipped).
//
// With QSR_FUZZ_SEED_DIR set, LLVMFuzzerInitialize writes a few well-formed runs there (a seed
// corpus: two workers joining, meeting at the barrier, reporting, rendezvous, status, stop).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "coordinator/kv_store.h"
#include "coordinator/request_validator.h"
#include "coordinator/run_controller.h"
#include "coordinator/token_guard.h"
#include "glog/logging.h"

namespace qsr {
namespace {

enum Tag : uint8_t {
  kJoin,
  kNextRounds,
  kReport,
  kLeave,
  kKvSet,
  kKvGet,
  kStatus,
  kListRounds,
  kListEvals,
  kStop,
  kHeartbeatValidate,
  kToken,
  kTick,
  kTagCount,
};

constexpr char kFuzzToken[] = "fuzz-token";

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "coordinator_fuzz: invariant broken: %s\n", what);
  std::abort();
}

const Recipe& FuzzRecipe() {
  static const Recipe* recipe = [] {
    absl::StatusOr<Recipe> r = LoadRecipeFile(std::string(QSR_SOURCE_DIR) +
                                              "/recipes/fashion-mnist/cnn-localsgd-qsr.yaml");
    if (!r.ok()) Die("cannot load the recipe");
    r->workers = 2;
    r->epochs = 2;
    r->steps_per_epoch = 20;
    if (!ResolveRecipe(*r).ok()) Die("cannot resolve the recipe");
    return new Recipe(*r);
  }();
  return *recipe;
}

// Counts answers to waiting calls; each must be answered once.
struct Answers {
  int64_t accepted = 0;
  int64_t answered = 0;
};

// QSR_FUZZ_TRACE=1 prints every parsed request, to read a crashing input.
const bool kTrace = std::getenv("QSR_FUZZ_TRACE") != nullptr;
// QSR_FUZZ_UNANSWERED=ignore skips the end-of-input check that every waiting call was answered
// (a known RunController issue: fuzz/known/README.md); "answered at most once" is always checked.
const bool kCheckUnanswered = [] {
  const char* v = std::getenv("QSR_FUZZ_UNANSWERED");
  return v == nullptr || std::string(v) != "ignore";
}();

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message* m) {
  const bool ok = m->ParseFromArray(data, static_cast<int>(size));
  if (ok && kTrace) {
    std::fprintf(stderr, "%s { %s }\n", m->GetTypeName().c_str(), m->ShortDebugString().c_str());
  }
  return ok;
}

void RunOne(const uint8_t* data, size_t size) {
  RunController::Options options;
  options.run_id = "fuzz";
  options.rendezvous_timeout = absl::Seconds(30);
  options.plan_batch_steps = 8;
  RunController controller(FuzzRecipe(), options, nullptr);
  KvStore::Limits limits;
  limits.max_total_bytes = 64 << 10;  // small, so that inputs reach the limit
  limits.max_waiters = 64;
  KvStore store(limits);
  const TokenGuard guard(kFuzzToken, /*protect_reads=*/true);
  auto answers = std::make_shared<Answers>();
  absl::Time now = absl::FromUnixSeconds(1700000000);

  size_t pos = 0;
  while (pos + 2 <= size) {
    const uint8_t tag = data[pos];
    const size_t len = std::min<size_t>(data[pos + 1], size - pos - 2);
    const uint8_t* body = data + pos + 2;
    pos += 2 + len;
    now += absl::Seconds(tag >> 4);
    switch ((tag & 0x0f) % kTagCount) {
      case kJoin: {
        v1::JoinRequest r;
        if (!Parse(body, len, &r) || !ValidateJoin(r).ok()) break;
        auto done = [answers](const v1::JoinReply&) { ++answers->answered; };
        ++answers->accepted;  // before the call: it may answer at once
        if (!controller.Join(r, now, now + absl::Seconds(10), done).ok()) --answers->accepted;
        break;
      }
      case kNextRounds: {
        v1::NextRoundsRequest r;
        if (!Parse(body, len, &r) || !ValidateNextRounds(r).ok()) break;
        auto done = [answers](const v1::NextRoundsReply&) { ++answers->answered; };
        ++answers->accepted;  // before the call: it may answer at once
        if (!controller.NextRounds(r, now, done).ok()) --answers->accepted;
        break;
      }
      case kReport: {
        v1::ReportRequest r;
        if (Parse(body, len, &r) && ValidateReport(r).ok()) (void)controller.Report(r, now);
        break;
      }
      case kLeave: {
        v1::LeaveRequest r;
        if (Parse(body, len, &r) && ValidateLeave(r).ok()) (void)controller.Leave(r, now);
        break;
      }
      case kKvSet: {
        v1::KvSetRequest r;
        if (Parse(body, len, &r)) (void)store.Set(r.key(), r.value());
        break;
      }
      case kKvGet: {
        v1::KvGetRequest r;
        if (!Parse(body, len, &r) || !ValidateKvGet(r).ok()) break;
        std::vector<std::string> keys(r.keys().begin(), r.keys().end());
        auto done = [answers](absl::StatusOr<std::vector<std::string>>) { ++answers->answered; };
        ++answers->accepted;
        if (!store.Get(std::move(keys), now + absl::Milliseconds(r.timeout_ms()), done).ok()) {
          --answers->accepted;
        }
        break;
      }
      case kStatus:
        if (kTrace) std::fprintf(stderr, "GetStatus\n");
        (void)controller.Status(now);
        break;
      case kListRounds: {
        v1::ListRoundsRequest r;
        if (Parse(body, len, &r) && ValidateListRounds(r).ok()) (void)controller.Rounds(r);
        break;
      }
      case kListEvals:
        (void)controller.Evals();
        break;
      case kStop: {
        v1::StopRequest r;
        if (Parse(body, len, &r) && ValidateStop(r).ok()) (void)controller.Stop(r);
        break;
      }
      case kHeartbeatValidate: {
        v1::HeartbeatRequest r;
        if (Parse(body, len, &r) && ValidateHeartbeat(r).ok()) (void)controller.Heartbeat(r, now);
        break;
      }
      case kToken: {
        const absl::string_view presented(reinterpret_cast<const char*>(body), len);
        const bool ok = guard.Check(&presented, TokenGuard::Access::kChange).ok();
        if (ok != (presented == kFuzzToken)) Die("the token check disagrees with equality");
        break;
      }
      case kTick:
        if (kTrace) std::fprintf(stderr, "Tick\n");
        controller.Tick(now);
        store.ExpireWaiters(now);
        break;
    }
    if (answers->answered > answers->accepted) Die("a waiting call was answered twice");
  }
  // Past every deadline, every waiting call has been answered exactly once.
  now += absl::Hours(24 * 365);
  controller.Tick(now);
  store.ExpireWaiters(absl::InfiniteFuture());
  if (kCheckUnanswered && answers->answered != answers->accepted) {
    Die(absl::StrCat(answers->accepted, " waiting calls accepted, ", answers->answered, " answered")
            .c_str());
  }
}

// --- The seed corpus ---------------------------------------------------------------------------

void Append(std::string* out, Tag tag, const google::protobuf::MessageLite& m) {
  std::string bytes = m.SerializeAsString();
  if (bytes.size() > 255) Die("seed record too long");
  out->push_back(static_cast<char>(tag));
  out->push_back(static_cast<char>(bytes.size()));
  out->append(bytes);
}

void WriteSeeds(const std::string& dir) {
  const std::vector<Round> plan = RoundPlanner(FuzzRecipe()).Plan();
  std::string run;
  for (int rank = 0; rank < 2; ++rank) {
    v1::JoinRequest j;
    j.set_worker_id(absl::StrCat("w", rank));
    j.set_host("127.0.0.1");
    j.set_device("cpu");
    Append(&run, kJoin, j);
  }
  const std::string joined = run;
  for (int rank = 0; rank < 2; ++rank) {
    v1::KvSetRequest set;
    set.set_key(absl::StrCat("fuzz/g1/c0/", rank));
    set.set_value("addr");
    Append(&run, kKvSet, set);
    v1::KvGetRequest get;
    get.add_keys("fuzz/g1/c0/0");
    get.add_keys("fuzz/g1/c0/1");
    get.set_timeout_ms(1000);
    Append(&run, kKvGet, get);
  }
  for (size_t i = 0; i < plan.size() && i < 4; ++i) {
    for (int rank = 0; rank < 2; ++rank) {
      v1::NextRoundsRequest n;
      n.set_worker_id(absl::StrCat("w", rank));
      n.set_rank(rank);
      n.set_generation(1);
      n.set_next_round(static_cast<int64_t>(i));
      Append(&run, kNextRounds, n);
      v1::ReportRequest r;
      r.set_worker_id(absl::StrCat("w", rank));
      r.set_rank(rank);
      r.set_generation(1);
      v1::RoundReport* round = r.add_rounds();
      round->set_round(plan[i].index);
      round->set_start_step(plan[i].start_step);
      round->set_h(plan[i].h);
      round->set_train_loss(1.5);
      round->set_samples(64);
      round->set_seconds(0.25);
      Append(&run, kReport, r);
    }
  }
  Append(&run, kStatus, v1::GetStatusRequest());
  Append(&run, kListRounds, v1::ListRoundsRequest());
  std::string stopped = run;
  v1::StopRequest stop;
  stop.set_reason("fuzz");
  Append(&stopped, kStop, stop);
  for (int rank = 0; rank < 2; ++rank) {
    v1::LeaveRequest l;
    l.set_worker_id(absl::StrCat("w", rank));
    l.set_rank(rank);
    l.set_generation(1);
    Append(&stopped, kLeave, l);
  }
  std::string tick = run;
  tick.push_back(static_cast<char>(0xf0 | kTick));
  tick.push_back(0);
  // A host agent's calls: both ranks beat and reach the barrier in one call each.
  std::string grouped = joined;
  for (size_t i = 0; i < plan.size() && i < 2; ++i) {
    v1::HeartbeatRequest beat;
    beat.set_worker_id("w0");
    beat.set_generation(1);
    v1::CoMember* peer = beat.add_co_members();
    peer->set_worker_id("w1");
    peer->set_rank(1);
    Append(&grouped, kHeartbeatValidate, beat);
    v1::NextRoundsRequest n;
    n.set_worker_id("w0");
    n.set_generation(1);
    n.set_next_round(static_cast<int64_t>(i));
    *n.add_co_members() = *peer;
    Append(&grouped, kNextRounds, n);
  }
  int n = 0;
  for (const std::string* seed : {&run, &stopped, &tick, &grouped}) {
    std::ofstream(absl::StrCat(dir, "/seed-", n++), std::ios::binary) << *seed;
  }
}

}  // namespace
}  // namespace qsr

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  FLAGS_minloglevel = 3;  // the controller logs every failure it sees; keep the output readable
  if (const char* dir = std::getenv("QSR_FUZZ_SEED_DIR"); dir != nullptr) qsr::WriteSeeds(dir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qsr::RunOne(data, size);
  return 0;
}
