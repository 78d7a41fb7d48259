#include "common/flags.h"

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/recipe.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qsr {
namespace {

using ::testing::HasSubstr;

absl::Status ParseArgs(FlagParser& parser, std::vector<const char*> args) {
  args.insert(args.begin(), "prog");
  return parser.Parse(static_cast<int>(args.size()), args.data());
}

FlagParser MakeParser() {
  FlagParser p("qsrctl", "qsrctl <command> [flags]");
  p.Add("recipe", "", "recipe YAML file");
  p.Add("port", "50051", "port to listen on");
  p.Add("lr-scale", "1.5", "scale");
  p.AddBool("json", "print JSON");
  return p;
}

TEST(FlagsTest, ParsesBothFormsDefaultsAndPositionals) {
  FlagParser p = MakeParser();
  ASSERT_TRUE(ParseArgs(p, {"plan", "--recipe", "a.yaml", "--port=9", "--json", "extra"}).ok());
  EXPECT_EQ(p.positional(), (std::vector<std::string>{"plan", "extra"}));
  EXPECT_EQ(p.Get("recipe"), "a.yaml");
  EXPECT_EQ(*p.GetInt("port"), 9);
  EXPECT_DOUBLE_EQ(*p.GetDouble("lr-scale"), 1.5);
  EXPECT_TRUE(p.GetBool("json"));
  EXPECT_TRUE(p.IsSet("port"));
  EXPECT_FALSE(p.IsSet("lr-scale"));
  EXPECT_FALSE(p.help_requested());
}

TEST(FlagsTest, SnakeCaseSpellingAndBoolValues) {
  FlagParser p = MakeParser();
  ASSERT_TRUE(ParseArgs(p, {"--lr_scale=2", "--json=no"}).ok());
  EXPECT_DOUBLE_EQ(*p.GetDouble("lr-scale"), 2);
  EXPECT_FALSE(p.GetBool("json"));
  EXPECT_TRUE(p.IsSet("json"));
  FlagParser bad = MakeParser();
  EXPECT_THAT(std::string(ParseArgs(bad, {"--json=maybe"}).message()),
              HasSubstr("--json: value \"maybe\" is not a boolean"));
}

TEST(FlagsTest, NegativeNumberIsAValue) {
  FlagParser p = MakeParser();
  ASSERT_TRUE(ParseArgs(p, {"--port", "-1"}).ok());
  EXPECT_EQ(*p.GetInt("port"), -1);
}

// What every main() does with its command line: go on, print help and exit 0, or name the error
// and exit 2.
TEST(FlagsTest, ParseForMainSaysWhetherToGoOnAndWithWhichExitCode) {
  auto run = [](std::vector<const char*> args) {
    FlagParser p = MakeParser();
    args.insert(args.begin(), "prog");
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    std::optional<int> code = p.ParseForMain(static_cast<int>(args.size()), args.data());
    const std::string out = ::testing::internal::GetCapturedStdout();
    const std::string err = ::testing::internal::GetCapturedStderr();
    return std::make_tuple(code, out, err);
  };
  auto [go_on, out0, err0] = run({"--port", "80"});
  EXPECT_FALSE(go_on.has_value());
  EXPECT_TRUE(out0.empty() && err0.empty());
  auto [help, out1, err1] = run({"--help"});
  EXPECT_EQ(help, 0);
  EXPECT_THAT(out1, HasSubstr("--port"));
  auto [bad, out2, err2] = run({"--bogus"});
  EXPECT_EQ(bad, 2);
  EXPECT_THAT(err2, HasSubstr("qsrctl: "));
  EXPECT_THAT(err2, HasSubstr("bogus"));
}

TEST(FlagsTest, Help) {
  FlagParser p = MakeParser();
  ASSERT_TRUE(ParseArgs(p, {"--help", "--bogus"}).ok());
  EXPECT_TRUE(p.help_requested());
  FlagParser q = MakeParser();
  ASSERT_TRUE(ParseArgs(q, {"-h"}).ok());
  EXPECT_TRUE(q.help_requested());

  const std::string help = q.Help();
  EXPECT_THAT(help, HasSubstr("qsrctl <command> [flags]"));
  EXPECT_THAT(help, HasSubstr("--port"));
  EXPECT_THAT(help, HasSubstr("(default: 50051)"));
  EXPECT_THAT(help, HasSubstr("--json"));
  EXPECT_THAT(help, ::testing::Not(HasSubstr("Recipe keys")));
  q.AcceptRecipeOverrides();
  EXPECT_THAT(q.Help(), HasSubstr("Recipe keys (override the recipe):"));
  EXPECT_THAT(q.Help(), HasSubstr("--max-lr"));
}

TEST(FlagsTest, UnknownFlagAndMissingValue) {
  FlagParser p = MakeParser();
  absl::Status s = ParseArgs(p, {"--foo", "1"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()), "unknown flag --foo (see --help)");
  FlagParser q = MakeParser();
  EXPECT_EQ(std::string(ParseArgs(q, {"--max-lr", "1"}).message()),
            "unknown flag --max-lr (see --help)");  // recipe overrides not accepted
  FlagParser r = MakeParser();
  EXPECT_THAT(std::string(ParseArgs(r, {"--recipe"}).message()),
              HasSubstr("flag --recipe needs a value"));
  FlagParser t = MakeParser();
  EXPECT_THAT(std::string(ParseArgs(t, {"--recipe", "--json"}).message()),
              HasSubstr("flag --recipe needs a value"));
  FlagParser u = MakeParser();
  EXPECT_THAT(std::string(ParseArgs(u, {"-x"}).message()), HasSubstr("unknown flag -x"));
}

TEST(FlagsTest, GetIntAndGetDoubleErrorsNameFlagAndValue) {
  FlagParser p = MakeParser();
  ASSERT_TRUE(ParseArgs(p, {"--port=abc", "--lr-scale=x"}).ok());
  EXPECT_EQ(std::string(p.GetInt("port").status().message()),
            "flag --port: value \"abc\" is not an integer");
  EXPECT_EQ(std::string(p.GetDouble("lr-scale").status().message()),
            "flag --lr-scale: value \"x\" is not a number");
}

FlagParser MakeTypedParser() {
  FlagParser p("qsr-coordinator", "qsr-coordinator [flags]");
  p.AddInt("port", 50051, "port to listen on");
  p.AddDouble("scale", 1.5, "scale");
  p.AddDuration("regroup-window", absl::Seconds(4), "how long a regroup waits");
  p.AddDeprecatedAlias("regroup-timeout-ms", "regroup-window", "ms");
  return p;
}

TEST(FlagsTest, TypedFlagsParseDefaultsAndValuesWithUnits) {
  FlagParser p = MakeTypedParser();
  ASSERT_TRUE(ParseArgs(p, {}).ok());
  EXPECT_EQ(p.Int("port"), 50051);
  EXPECT_DOUBLE_EQ(p.Double("scale"), 1.5);
  EXPECT_EQ(p.Duration("regroup-window"), absl::Seconds(4));
  EXPECT_THAT(p.Help(), HasSubstr("(default: 4s)"));

  FlagParser q = MakeTypedParser();
  ASSERT_TRUE(ParseArgs(q, {"--port=7", "--scale", "-2", "--regroup-window", "1m30s"}).ok());
  EXPECT_EQ(q.Int("port"), 7);
  EXPECT_DOUBLE_EQ(q.Double("scale"), -2);
  EXPECT_EQ(q.Duration("regroup-window"), absl::Seconds(90));
  EXPECT_TRUE(q.warnings().empty());
}

TEST(FlagsTest, AZeroDurationDefaultParsesAndShowsItsUnit) {
  FlagParser p("prog", "prog");
  p.AddDuration("linger", absl::ZeroDuration(), "keep serving this long");
  ASSERT_TRUE(ParseArgs(p, {}).ok());
  EXPECT_EQ(p.Duration("linger"), absl::ZeroDuration());
  EXPECT_THAT(p.Help(), HasSubstr("(default: 0s)"));
}

TEST(FlagsTest, TypedFlagsRefuseBadValuesAtParseNamingFlagAndWhatIsAllowed) {
  struct Case {
    std::vector<const char*> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--port", "80x"}, "flag --port: value \"80x\" is not an integer"},
           {{"--scale=abc"}, "flag --scale: value \"abc\" is not a number"},
           {{"--regroup-window", "4"}, "is not a duration with its unit (e.g. 250ms, 4s"},
           {{"--regroup-window=0"}, "flag --regroup-window: value \"0\""},
           {{"--regroup-window", "4 parsecs"}, "units ns, us, ms, s, m, h"},
       }) {
    FlagParser p = MakeTypedParser();
    const absl::Status s = ParseArgs(p, c.args);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.args[0];
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.expected)) << c.args[0];
  }
}

TEST(FlagsTest, ADeprecatedAliasStillWorksWithItsUnitAndWarns) {
  FlagParser p = MakeTypedParser();
  ASSERT_TRUE(ParseArgs(p, {"--regroup-timeout-ms", "2500"}).ok());
  EXPECT_EQ(p.Duration("regroup-window"), absl::Milliseconds(2500));
  ASSERT_EQ(p.warnings().size(), 1u);
  EXPECT_THAT(p.warnings()[0],
              HasSubstr("--regroup-timeout-ms is deprecated; use --regroup-window"));
  FlagParser q = MakeTypedParser();
  EXPECT_FALSE(ParseArgs(q, {"--regroup-timeout-ms=soon"}).ok());
}

TEST(FlagsTest, ATypedGetterOfTheWrongTypeIsAProgrammingErrorThatAborts) {
  FlagParser p("prog", "prog");
  p.AddDuration("wait", absl::Seconds(1), "wait");
  p.Add("ok", "x", "a string");
  ASSERT_TRUE(ParseArgs(p, {}).ok());
  EXPECT_EQ(p.Get("ok"), "x");
  EXPECT_DEATH(p.Int("wait"), "read with a getter of another type");
}

TEST(FlagsTest, RecipeOverridesInOrder) {
  FlagParser p = MakeParser();
  p.AcceptRecipeOverrides();
  ASSERT_TRUE(ParseArgs(p, {"run", "--max-lr", "0.2", "--decay_points=30,60", "--nesterov",
                            "--max-lr=0.3", "--json"})
                  .ok());
  EXPECT_EQ(
      p.recipe_overrides(),
      (std::vector<std::pair<std::string, std::string>>{
          {"max_lr", "0.2"}, {"decay_points", "30,60"}, {"nesterov", "true"}, {"max_lr", "0.3"}}));
  EXPECT_TRUE(p.GetBool("json"));
  EXPECT_EQ(p.positional(), std::vector<std::string>{"run"});

  Recipe r;
  ASSERT_TRUE(ApplyRecipeOverrides(r, p.recipe_overrides()).ok());
  EXPECT_DOUBLE_EQ(r.max_lr, 0.3);  // the later flag wins
  EXPECT_EQ(r.decay_points, (std::vector<double>{30, 60}));
  EXPECT_TRUE(r.nesterov);
}

TEST(FlagsTest, BadOverrideNamesTheFlag) {
  Recipe r;
  absl::Status s = ApplyRecipeOverrides(r, {{"epochs", "3"}, {"max_lr", "abc"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(s.message()), "flag --max-lr: value \"abc\" is not a number");
  EXPECT_EQ(r.epochs, 3);
}

TEST(FlagsTest, LoadRecipeWithOverridesAppliesThenResolves) {
  const std::string path =
      std::string(QSR_SOURCE_DIR) + "/recipes/fashion-mnist/cnn-localsgd-qsr.yaml";
  absl::StatusOr<Recipe> r = LoadRecipeWithOverrides(path, {{"workers", "4"}, {"epochs", "2"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->workers, 4);
  EXPECT_EQ(r->epochs, 2);
  EXPECT_GT(r->steps_per_epoch, 0);  // resolved

  absl::Status bad_flag = LoadRecipeWithOverrides(path, {{"max_lr", "abc"}}).status();
  EXPECT_EQ(bad_flag.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_flag.message()), HasSubstr("flag --max-lr"));
  // A value that parses but that the resolved recipe rejects: the error names the file.
  absl::Status bad_value = LoadRecipeWithOverrides(path, {{"workers", "0"}}).status();
  EXPECT_FALSE(bad_value.ok());
  EXPECT_THAT(std::string(bad_value.message()), HasSubstr(path));
  EXPECT_FALSE(LoadRecipeWithOverrides("/nonexistent/recipe.yaml", {}).ok());
}

TEST(FlagsTest, ADeprecatedAliasSetsTheRenamedFlagAndWarns) {
  FlagParser flags("qsr-worker", "qsr-worker");
  flags.Add("rejoin-timeout-s", "600", "after a failure, how long to keep asking to join");
  flags.AddDeprecatedAlias("regroup-timeout-s", "rejoin-timeout-s");
  const char* old_name[] = {"qsr-worker", "--regroup_timeout_s=30"};
  ASSERT_TRUE(flags.Parse(2, old_name).ok());
  EXPECT_EQ(flags.Get("rejoin-timeout-s"), "30");
  EXPECT_TRUE(flags.IsSet("rejoin-timeout-s"));
  ASSERT_EQ(flags.warnings().size(), 1u);
  EXPECT_THAT(flags.warnings()[0], HasSubstr("--regroup-timeout-s is deprecated"));
  EXPECT_THAT(flags.warnings()[0], HasSubstr("use --rejoin-timeout-s"));

  FlagParser renamed("qsr-worker", "qsr-worker");
  renamed.Add("rejoin-timeout-s", "600", "");
  renamed.AddDeprecatedAlias("regroup-timeout-s", "rejoin-timeout-s");
  const char* new_name[] = {"qsr-worker", "--rejoin-timeout-s", "45"};
  ASSERT_TRUE(renamed.Parse(3, new_name).ok());
  EXPECT_EQ(renamed.Get("rejoin-timeout-s"), "45");
  EXPECT_TRUE(renamed.warnings().empty());
  EXPECT_THAT(renamed.Help(), testing::Not(HasSubstr("regroup-timeout-s")));
}

}  // namespace
}  // namespace qsr
