// qsrctl: query a qsr run, or preview the round plan of a recipe. See --help.
#include <iostream>

#include "absl/strings/str_format.h"
#include "cli/status_format.h"
#include "common/flags.h"
#include "common/recipe.h"
#include "common/round_planner.h"
#include "coordinator/coordinator_client.h"

namespace {

constexpr char kUsage[] =
    "qsrctl [--coordinator HOST:PORT] COMMAND [flags]\n"
    "Commands:\n"
    "  status [--json]                 the live run: state, step, epoch, lr, H, round, workers\n"
    "  rounds [--json] [--from N]      completed rounds, one per line\n"
    "  plan --recipe FILE [--KEY=VALUE ...] [--json]\n"
    "                                  the round plan a recipe produces (no coordinator needed)";

int Fail(const std::string& message) {
  std::cerr << "qsrctl: " << message << "\n";
  return 2;
}

int Plan(const qsr::FlagParser& flags) {
  if (flags.Get("recipe").empty()) return Fail("plan needs --recipe FILE");
  absl::StatusOr<qsr::Recipe> recipe = qsr::LoadRecipeFile(flags.Get("recipe"));
  if (!recipe.ok()) return Fail(std::string(recipe.status().message()));
  if (absl::Status s = qsr::ApplyRecipeOverrides(*recipe, flags.recipe_overrides()); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::Status s = qsr::ResolveRecipe(*recipe); !s.ok()) {
    return Fail(flags.Get("recipe") + ": " + std::string(s.message()));
  }
  qsr::RoundPlanner planner(*recipe);
  std::vector<qsr::Round> rounds = planner.Plan();
  qsr::PlanSummary summary = qsr::RoundPlanner::Summarize(rounds);
  const bool json = flags.GetBool("json");
  if (!json) {
    std::cout << absl::StrFormat("%8s %10s %12s %8s\n", "round", "step", "lr", "h");
  }
  for (const qsr::Round& r : rounds) {
    if (json) {
      std::cout << qsr::RoundJson(r) << "\n";
    } else {
      std::cout << absl::StrFormat("%8d %10d %12.6g %8d\n", r.index, r.start_step, r.lr, r.h);
    }
  }
  if (json) {
    std::cout << qsr::PlanSummaryJson(summary) << "\n";
  } else {
    std::cout << absl::StrFormat(
        "\n%d rounds over %d steps; mean H %.2f, max H %d; %.2f%% of steps end in a sync\n",
        summary.rounds, summary.total_steps, summary.mean_h, summary.max_h,
        100.0 * summary.sync_share);
  }
  return 0;
}

int Status(qsr::CoordinatorClient& client, const qsr::FlagParser& flags) {
  absl::StatusOr<qsr::v1::GetStatusReply> s = client.GetStatus(absl::Now() + absl::Seconds(10));
  if (!s.ok()) {
    return Fail(absl::StrFormat("cannot reach coordinator at %s: %s", flags.Get("coordinator"),
                                s.status().message()));
  }
  std::cout << (flags.GetBool("json") ? qsr::StatusJson(*s) + "\n" : qsr::StatusTable(*s));
  return 0;
}

int Rounds(qsr::CoordinatorClient& client, const qsr::FlagParser& flags) {
  absl::StatusOr<int64_t> from = flags.GetInt("from");
  if (!from.ok() || *from < 0) return Fail("--from must be an integer >= 0");
  qsr::v1::ListRoundsRequest request;
  request.set_from_round(*from);
  absl::StatusOr<qsr::v1::ListRoundsReply> reply =
      client.ListRounds(request, absl::Now() + absl::Seconds(30));
  if (!reply.ok()) {
    return Fail(absl::StrFormat("cannot reach coordinator at %s: %s", flags.Get("coordinator"),
                                reply.status().message()));
  }
  const bool json = flags.GetBool("json");
  if (!json) {
    std::cout << absl::StrFormat("%8s %10s %12s %6s %8s %12s %9s %10s\n", "round", "step", "lr",
                                 "h", "workers", "bytes", "seconds", "loss");
  }
  for (const qsr::v1::RoundRecord& r : reply->rounds()) {
    if (json) {
      std::cout << qsr::RoundRecordJson(r) << "\n";
    } else {
      std::cout << absl::StrFormat("%8d %10d %12.6g %6d %8d %12d %9.3f %10.4f\n", r.round(),
                                   r.step(), r.lr(), r.h(), r.workers(), r.bytes(), r.seconds(),
                                   r.train_loss());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  qsr::FlagParser flags("qsrctl", kUsage);
  flags.Add("coordinator", "127.0.0.1:7070", "the coordinator's HOST:PORT");
  flags.AddBool("json", "machine-readable output (JSON; one object per line for lists)");
  flags.Add("recipe", "", "plan: the recipe YAML file");
  flags.Add("from", "0", "rounds: first round to list");
  flags.AcceptRecipeOverrides();
  if (absl::Status s = flags.Parse(argc, argv); !s.ok()) return Fail(std::string(s.message()));
  if (flags.help_requested() || flags.positional().empty()) {
    std::cout << flags.Help();
    return flags.help_requested() ? 0 : 2;
  }
  const std::string command = flags.positional()[0];
  if (flags.positional().size() > 1) {
    return Fail("unexpected argument \"" + flags.positional()[1] + "\" (see --help)");
  }
  if (command == "plan") return Plan(flags);
  if (!flags.recipe_overrides().empty()) {
    return Fail("recipe keys (--" + flags.recipe_overrides()[0].first + ") only go with plan");
  }
  std::unique_ptr<qsr::CoordinatorClient> client =
      qsr::NewGrpcCoordinatorClient(flags.Get("coordinator"));
  if (command == "status") return Status(*client, flags);
  if (command == "rounds") return Rounds(*client, flags);
  return Fail("unknown command \"" + command + "\"; allowed: status, rounds, plan");
}
