// Command-line parsing shared by the binaries: declared flags plus recipe overrides.
//
// Accepts `--name value`, `--name=value`, and for boolean flags a bare `--name`. Names are
// kebab-case; snake_case is accepted too. With AcceptRecipeOverrides(), any recipe key
// (`--max-lr 0.1`) is collected as an override instead of being an unknown flag. Positional
// arguments (a subcommand) are kept in order. An unknown flag or a missing value is an error that
// names the flag and points at --help.
//
// Not thread-safe; parse once at start-up.
#ifndef QSR_COMMON_FLAGS_H_
#define QSR_COMMON_FLAGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace qsr {

class FlagParser {
 public:
  // `usage` starts with the program name: "qsrctl [flags] COMMAND".
  FlagParser(std::string program, std::string usage);

  // Declares a flag. `name` is kebab-case without the dashes.
  void Add(const std::string& name, const std::string& default_value, const std::string& help);
  void AddBool(const std::string& name, const std::string& help);
  // `--old_name` is taken as `--name` (declared), with a warning (warnings(); ParseForMain
  // prints them): a renamed flag keeps working for a while.
  void AddDeprecatedAlias(const std::string& old_name, const std::string& name);
  void AcceptRecipeOverrides();

  absl::Status Parse(int argc, const char* const* argv);
  // Parse for a main(): returns the exit code when the program should stop now (0 after printing
  // --help to stdout, 2 after printing "<program>: <error>" to stderr), or nullopt to go on.
  std::optional<int> ParseForMain(int argc, const char* const* argv);

  bool help_requested() const { return help_requested_; }
  // Usage, every declared flag with its default and help, and the recipe keys when accepted.
  std::string Help() const;

  std::string Get(const std::string& name) const;
  bool IsSet(const std::string& name) const;  // given on the command line
  absl::StatusOr<int64_t> GetInt(const std::string& name) const;
  absl::StatusOr<double> GetDouble(const std::string& name) const;
  bool GetBool(const std::string& name) const;

  // Recipe overrides in command-line order, keys in snake_case.
  const std::vector<std::pair<std::string, std::string>>& recipe_overrides() const {
    return recipe_overrides_;
  }
  const std::vector<std::string>& positional() const { return positional_; }
  // One line per deprecated alias used, without the program's name.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  struct Spec {
    std::string default_value;
    std::string help;
    bool is_bool = false;
  };
  std::string program_;
  std::string usage_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
  bool accept_recipe_ = false;
  bool help_requested_ = false;
  std::vector<std::pair<std::string, std::string>> recipe_overrides_;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> aliases_;  // deprecated name -> name
  std::vector<std::string> warnings_;
};

// Applies overrides to a recipe; the first bad one is an error naming the flag.
struct Recipe;
absl::Status ApplyRecipeOverrides(
    Recipe& recipe, const std::vector<std::pair<std::string, std::string>>& overrides);

// The recipe a binary runs: the file at `path` (LoadRecipeFile), then `overrides`, then
// ResolveRecipe. An error names the file, or the flag of the bad override.
absl::StatusOr<Recipe> LoadRecipeWithOverrides(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& overrides);

}  // namespace qsr

#endif  // QSR_COMMON_FLAGS_H_
