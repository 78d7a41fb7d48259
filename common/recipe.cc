#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/recipe_keys.h"
#include "common/round_planner.h"
#include "yaml-cpp/yaml.h"

namespace qsr {

using recipe_internal::FieldText;
using recipe_internal::FindKey;
using recipe_internal::FormatDouble;
using recipe_internal::KeyDef;
using recipe_internal::Keys;
using recipe_internal::ParseDouble;
using recipe_internal::QuoteKey;
using recipe_internal::SetField;
using recipe_internal::ToKebab;
using recipe_internal::ToSnake;
using recipe_internal::UnknownKey;
using recipe_internal::WithContext;

namespace {

std::string YamlLocation(const std::string& source, const YAML::Mark& mark) {
  if (mark.is_null()) return source;
  return absl::StrCat(source, ":", mark.line + 1);
}

// Flattens one YAML value to the text SetField parses; lists only for list keys.
absl::StatusOr<std::string> YamlValueText(const KeyDef& def, const YAML::Node& value) {
  const bool is_list = std::holds_alternative<std::vector<double> Recipe::*>(def.field);
  const bool is_string = std::holds_alternative<std::string Recipe::*>(def.field);
  if (value.IsNull()) {
    // `data_dir:` means empty; `decay_points:` means none. A missing number is an error.
    if (is_string || is_list) return std::string();
    return absl::InvalidArgumentError("has no value");
  }
  if (value.IsScalar()) return value.Scalar();
  if (value.IsSequence() && is_list) {
    std::vector<std::string> items;
    for (const YAML::Node& item : value) {
      if (!item.IsScalar()) return absl::InvalidArgumentError("must be a list of numbers");
      double unused;
      absl::Status s = ParseDouble(item.Scalar(), unused);
      if (!s.ok()) return WithContext(s, "list item");
      items.push_back(item.Scalar());
    }
    return absl::StrJoin(items, ",");
  }
  return absl::InvalidArgumentError(absl::StrCat("must be ",
                                                 is_list ? "a list of numbers" : "a single value",
                                                 ", not a ", value.IsSequence() ? "list" : "map"));
}

absl::Status ApplyYamlMap(Recipe& recipe, const YAML::Node& root, const std::string& source) {
  std::set<std::string> seen;
  for (const auto& entry : root) {
    const YAML::Node& key_node = entry.first;
    const std::string where = YamlLocation(source, key_node.Mark());
    if (!key_node.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": keys must be plain names"));
    }
    const std::string key = key_node.Scalar();
    const KeyDef* def = FindKey(key);
    if (def == nullptr) {
      return WithContext(UnknownKey(key), where);
    }
    if (!seen.insert(key).second) {
      // yaml-cpp keeps both entries of a duplicated key; the later would silently win.
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate key ", QuoteKey(key)));
    }
    const std::string context = absl::StrCat(where, ": key ", QuoteKey(key));
    absl::StatusOr<std::string> text = YamlValueText(*def, entry.second);
    if (!text.ok()) return WithContext(text.status(), context);
    absl::Status s = SetField(recipe, *def, *text);
    if (!s.ok()) return WithContext(s, context);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Recipe> ParseRecipeYaml(const std::string& yaml, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlLocation(source, e.mark), ": malformed YAML: ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the top level must be a map of key: value, not ",
                     root.IsNull()       ? "an empty document"
                     : root.IsSequence() ? "a list"
                                         : "a value"));
  }
  Recipe recipe;
  try {
    absl::Status s = ApplyYamlMap(recipe, root, source);
    if (!s.ok()) return s;
  } catch (const YAML::Exception& e) {
    // Node access should not throw on a parsed document; convert rather than let it escape.
    return absl::InvalidArgumentError(absl::StrCat(YamlLocation(source, e.mark), ": ", e.msg));
  }
  return recipe;
}

absl::StatusOr<Recipe> LoadRecipeFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open recipe file ", path));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read recipe file ", path));
  return ParseRecipeYaml(text.str(), path);
}

absl::Status SetRecipeKey(Recipe& recipe, const std::string& key, const std::string& value) {
  return SetRecipeKeyAs(recipe, key, value, absl::StrCat("key ", QuoteKey(ToSnake(key))));
}

absl::Status SetRecipeKeyAs(Recipe& recipe, const std::string& key, const std::string& value,
                            const std::string& what) {
  const std::string snake = ToSnake(key);
  const KeyDef* def = FindKey(snake);
  if (def == nullptr) return UnknownKey(snake);
  absl::Status s = SetField(recipe, *def, value);
  if (!s.ok()) return WithContext(s, what);
  return absl::OkStatus();
}

bool IsRecipeKey(const std::string& key) { return FindKey(ToSnake(key)) != nullptr; }

bool IsRecipeBoolKey(const std::string& key) {
  const KeyDef* def = FindKey(ToSnake(key));
  return def != nullptr && std::holds_alternative<bool Recipe::*>(def->field);
}

std::vector<std::pair<std::string, std::string>> RecipeKeyHelp() {
  const Recipe defaults;
  std::vector<std::pair<std::string, std::string>> help;
  for (const KeyDef& def : Keys()) {
    std::string text = def.help;
    if (!def.allowed.empty()) absl::StrAppend(&text, ": ", absl::StrJoin(def.allowed, "|"));
    const std::string default_text = FieldText(defaults, def);
    if (!default_text.empty()) absl::StrAppend(&text, " (default: ", default_text, ")");
    help.emplace_back(ToKebab(def.name), std::move(text));
  }
  return help;
}

std::string RecipeToYaml(const Recipe& recipe) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const KeyDef& def : Keys()) {
    out << YAML::Key << def.name << YAML::Value;
    if (auto* list = std::get_if<std::vector<double> Recipe::*>(&def.field)) {
      out << YAML::Flow << YAML::BeginSeq;
      for (double v : recipe.**list) out << FormatDouble(v);
      out << YAML::EndSeq;
    } else if (std::holds_alternative<std::string Recipe::*>(def.field)) {
      // Quoted, so that values such as "" or "true" stay strings for any YAML reader.
      out << YAML::DoubleQuoted << FieldText(recipe, def);
    } else {
      out << FieldText(recipe, def);
    }
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace qsr
