#include "common/flags.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "common/recipe.h"

namespace qsr {
namespace {

std::string ToKebab(const std::string& name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }
std::string ToSnake(const std::string& name) { return absl::StrReplaceAll(name, {{"-", "_"}}); }

// Returns false when `text` is not one of true/false/1/0/yes/no.
bool ParseBool(const std::string& text, bool& out) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "true" || lower == "1" || lower == "yes") {
    out = true;
    return true;
  }
  if (lower == "false" || lower == "0" || lower == "no") {
    out = false;
    return true;
  }
  return false;
}

absl::Status BadFlagValue(const std::string& name, const std::string& value,
                          const std::string& problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("flag --", name, ": value \"", value, "\" ", problem));
}

// Help lines are `  --name   help`, with help aligned; a name too long for the column gets its
// help on the next line.
void AppendHelpLine(std::string& out, const std::string& name, const std::string& help) {
  constexpr size_t kColumn = 26;
  std::string line = absl::StrCat("  ", name);
  if (line.size() + 2 > kColumn) {
    absl::StrAppend(&out, line, "\n");
    line.clear();
  }
  line.resize(kColumn, ' ');
  absl::StrAppend(&out, line, help, "\n");
}

}  // namespace

FlagParser::FlagParser(std::string program, std::string usage)
    : program_(std::move(program)), usage_(std::move(usage)) {}

std::optional<int> FlagParser::ParseForMain(int argc, const char* const* argv) {
  if (absl::Status s = Parse(argc, argv); !s.ok()) {
    std::cerr << program_ << ": " << s.message() << "\n";
    return 2;
  }
  for (const std::string& warning : warnings_) std::cerr << program_ << ": " << warning << "\n";
  if (help_requested_) {
    std::cout << Help();
    return 0;
  }
  return std::nullopt;
}

void FlagParser::Declare(const std::string& name, Spec spec) {
  const std::string kebab = ToKebab(name);
  if (specs_.count(kebab) == 0) order_.push_back(kebab);
  specs_[kebab] = std::move(spec);
}

void FlagParser::Add(const std::string& name, const std::string& default_value,
                     const std::string& help) {
  Declare(name, Spec{default_value, help, Type::kString});
}

void FlagParser::AddBool(const std::string& name, const std::string& help) {
  Declare(name, Spec{"false", help, Type::kBool});
}

void FlagParser::AddInt(const std::string& name, int64_t default_value, const std::string& help) {
  Declare(name, Spec{absl::StrCat(default_value), help, Type::kInt});
}

void FlagParser::AddDouble(const std::string& name, double default_value, const std::string& help) {
  Declare(name, Spec{absl::StrCat(default_value), help, Type::kDouble});
}

void FlagParser::AddDuration(const std::string& name, absl::Duration default_value,
                             const std::string& help) {
  // FormatDuration writes zero as a bare "0", which a duration flag does not accept.
  const std::string text =
      default_value == absl::ZeroDuration() ? "0s" : absl::FormatDuration(default_value);
  Declare(name, Spec{text, help, Type::kDuration});
}

void FlagParser::AddDeprecatedAlias(const std::string& old_name, const std::string& name,
                                    const std::string& unit_suffix) {
  aliases_[ToKebab(old_name)] = Alias{ToKebab(name), unit_suffix};
}

absl::Status FlagParser::CheckValue(const std::string& name, Type type, const std::string& value) {
  switch (type) {
    case Type::kInt: {
      int64_t unused;
      if (!absl::SimpleAtoi(value, &unused)) return BadFlagValue(name, value, "is not an integer");
      return absl::OkStatus();
    }
    case Type::kDouble: {
      double unused;
      if (!absl::SimpleAtod(value, &unused)) return BadFlagValue(name, value, "is not a number");
      return absl::OkStatus();
    }
    case Type::kDuration: {
      absl::Duration unused;
      // absl accepts a bare "0"; a duration flag always says its unit.
      double number;
      if (absl::SimpleAtod(value, &number) || !absl::ParseDuration(value, &unused)) {
        return BadFlagValue(name, value,
                            "is not a duration with its unit (e.g. 250ms, 4s, 1m30s; units ns, "
                            "us, ms, s, m, h)");
      }
      return absl::OkStatus();
    }
    case Type::kString:
    case Type::kBool:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

void FlagParser::AcceptRecipeOverrides() { accept_recipe_ = true; }

absl::Status FlagParser::Parse(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      // Help wins over anything else on the line, even a bad flag.
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg == "--") {
      for (++i; i < argc; ++i) positional_.push_back(argv[i]);
      break;
    }
    if (!absl::StartsWith(arg, "--")) {
      if (arg.size() > 1 && arg[0] == '-') {
        return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, " (see --help)"));
      }
      positional_.push_back(arg);
      continue;
    }

    const std::string body = arg.substr(2);
    const size_t eq = body.find('=');
    std::string name = ToKebab(body.substr(0, eq));
    const bool has_inline_value = eq != std::string::npos;
    std::string value = has_inline_value ? body.substr(eq + 1) : "";
    const Alias* alias = nullptr;
    if (auto it = aliases_.find(name); it != aliases_.end()) {
      alias = &it->second;
      warnings_.push_back(
          absl::StrCat("--", name, " is deprecated; use --", alias->name,
                       alias->unit_suffix.empty() ? "" : " (a duration: 4s, 250ms)"));
      name = alias->name;
    }

    const auto spec = specs_.find(name);
    const bool declared = spec != specs_.end();
    const bool recipe_key = !declared && accept_recipe_ && IsRecipeKey(name);
    if (!declared && !recipe_key) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", body.substr(0, eq), " (see --help)"));
    }
    const bool is_bool = declared ? spec->second.type == Type::kBool : IsRecipeBoolKey(name);
    if (!has_inline_value) {
      if (is_bool) {
        value = "true";  // a bare boolean flag
      } else if (i + 1 < argc && !absl::StartsWith(argv[i + 1], "--")) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", name, " needs a value (see --help)"));
      }
    }
    if (alias != nullptr) value += alias->unit_suffix;
    if (recipe_key) {
      // The recipe validates the value when the override is applied.
      recipe_overrides_.emplace_back(ToSnake(name), value);
      continue;
    }
    if (is_bool) {
      bool b;
      if (!ParseBool(value, b)) {
        return BadFlagValue(name, value, "is not a boolean (true/false/1/0/yes/no)");
      }
      value = b ? "true" : "false";
    }
    if (absl::Status s = CheckValue(name, spec->second.type, value); !s.ok()) return s;
    values_[name] = value;
  }
  // Defaults are the program's own, but a wrong one should fail here, not at the first use.
  for (const auto& [name, spec] : specs_) {
    if (values_.count(name) > 0) continue;
    if (absl::Status s = CheckValue(name, spec.type, spec.default_value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string FlagParser::Help() const {
  std::string out = absl::StrCat("Usage: ", usage_, "\n\nFlags:\n");
  AppendHelpLine(out, "-h, --help", "show this help");
  for (const std::string& name : order_) {
    const Spec& spec = specs_.at(name);
    std::string help = spec.help;
    if (spec.type != Type::kBool && !spec.default_value.empty()) {
      absl::StrAppend(&help, " (default: ", spec.default_value, ")");
    }
    AppendHelpLine(out, absl::StrCat("--", name), help);
  }
  if (accept_recipe_) {
    absl::StrAppend(&out, "\nRecipe keys (override the recipe):\n");
    for (const auto& [name, help] : RecipeKeyHelp()) {
      AppendHelpLine(out, absl::StrCat("--", name), help);
    }
  }
  return out;
}

std::string FlagParser::Get(const std::string& name) const {
  const std::string kebab = ToKebab(name);
  if (auto it = values_.find(kebab); it != values_.end()) return it->second;
  if (auto it = specs_.find(kebab); it != specs_.end()) return it->second.default_value;
  return "";
}

bool FlagParser::IsSet(const std::string& name) const { return values_.count(ToKebab(name)) > 0; }

absl::StatusOr<int64_t> FlagParser::GetInt(const std::string& name) const {
  const std::string value = Get(name);
  int64_t out;
  if (!absl::SimpleAtoi(value, &out)) {
    return BadFlagValue(ToKebab(name), value, "is not an integer");
  }
  return out;
}

absl::StatusOr<double> FlagParser::GetDouble(const std::string& name) const {
  const std::string value = Get(name);
  double out;
  if (!absl::SimpleAtod(value, &out)) return BadFlagValue(ToKebab(name), value, "is not a number");
  return out;
}

bool FlagParser::GetBool(const std::string& name) const {
  bool out = false;
  return ParseBool(Get(name), out) && out;
}

const std::string& FlagParser::TypedValue(const std::string& name, Type type) const {
  const std::string kebab = ToKebab(name);
  const auto spec = specs_.find(kebab);
  if (spec == specs_.end() || spec->second.type != type) {
    std::cerr << program_ << ": internal error: flag --" << kebab
              << " read with a getter of another type, or never declared\n";
    std::abort();
  }
  if (auto it = values_.find(kebab); it != values_.end()) return it->second;
  return spec->second.default_value;
}

int64_t FlagParser::Int(const std::string& name) const {
  int64_t out = 0;
  // Checked by Parse (CheckValue); a parse failure here would be our own bug.
  if (!absl::SimpleAtoi(TypedValue(name, Type::kInt), &out)) std::abort();
  return out;
}

double FlagParser::Double(const std::string& name) const {
  double out = 0;
  if (!absl::SimpleAtod(TypedValue(name, Type::kDouble), &out)) std::abort();
  return out;
}

absl::Duration FlagParser::Duration(const std::string& name) const {
  absl::Duration out;
  if (!absl::ParseDuration(TypedValue(name, Type::kDuration), &out)) std::abort();
  return out;
}

absl::Status ApplyRecipeOverrides(
    Recipe& recipe, const std::vector<std::pair<std::string, std::string>>& overrides) {
  for (const auto& [key, value] : overrides) {
    absl::Status s = SetRecipeKeyAs(recipe, key, value, absl::StrCat("flag --", ToKebab(key)));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<Recipe> LoadRecipeWithOverrides(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& overrides) {
  absl::StatusOr<Recipe> recipe = LoadRecipeFile(path);
  if (!recipe.ok()) return recipe.status();
  if (absl::Status s = ApplyRecipeOverrides(*recipe, overrides); !s.ok()) return s;
  if (absl::Status s = ResolveRecipe(*recipe); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }
  return recipe;
}

}  // namespace qsr
