// Internal to the recipe component (recipe.cc, recipe_keys.cc, recipe_validation.cc): the table
// of recipe keys and the text conversions around it. Everyone else uses common/recipe.h.
//
// Keys() is the one place that knows every key; YAML parsing, SetRecipeKey, RecipeToYaml,
// RecipeKeyHelp and the key reference all iterate it. Everything here is pure and thread-safe
// (the table is built once, on first use, and never changes).
#ifndef QSR_COMMON_RECIPE_KEYS_H_
#define QSR_COMMON_RECIPE_KEYS_H_

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/recipe.h"

namespace qsr {
namespace recipe_internal {

using Field = std::variant<std::string Recipe::*, double Recipe::*, int64_t Recipe::*,
                           bool Recipe::*, std::vector<double> Recipe::*>;

struct KeyDef {
  const char* name;  // snake_case
  Field field;
  const char* help;
  std::vector<std::string> allowed;  // for strings with a fixed set of values; empty = any
};

const std::vector<KeyDef>& Keys();
// The key named `snake`, or null.
const KeyDef* FindKey(absl::string_view snake);

std::string ToSnake(absl::string_view key);
std::string ToKebab(absl::string_view key);
// `"max_lr"`, with the quotes.
std::string QuoteKey(absl::string_view snake);
// `unknown key "max_lrr" (did you mean "max_lr"?)`, INVALID_ARGUMENT.
absl::Status UnknownKey(absl::string_view snake);

// Shortest text that parses back to the same double, so RecipeToYaml round-trips exactly.
std::string FormatDouble(double value);

// Parses a number; the error body is `value "abc" is not a number`.
absl::Status ParseDouble(absl::string_view text, double& out);

// Parses `text` into the field `def` names. Errors are bodies such as `value "abc" is not a
// number`, for the caller to prefix with where the value came from (WithContext).
absl::Status SetField(Recipe& recipe, const KeyDef& def, absl::string_view text);
// The field's value as text that SetField parses back (lists comma-separated).
std::string FieldText(const Recipe& recipe, const KeyDef& def);
// Prefixes an error body with its context, keeping the status code.
absl::Status WithContext(const absl::Status& status, absl::string_view context);

}  // namespace recipe_internal
}  // namespace qsr

#endif  // QSR_COMMON_RECIPE_KEYS_H_
