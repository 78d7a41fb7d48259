#include "cli/launch_plan.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace qsr {

absl::StatusOr<std::vector<HostSlots>> ParseHostfile(absl::string_view text,
                                                     const std::string& name) {
  std::vector<HostSlots> hosts;
  std::set<std::string> seen;
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    absl::string_view line = raw;
    if (size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(
          "hostfile ", name, " line ", number, ": \"", absl::StripTrailingAsciiWhitespace(raw),
          "\": ", why, "; expected HOST slots=N (N from 1 to 1024), as DeepSpeed's hostfile"));
    };
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    absl::string_view slots = words.size() == 2 ? words[1] : "";
    int n = 0;
    if (words.size() != 2 || !absl::ConsumePrefix(&slots, "slots=")) {
      return bad("not a host and slots=N");
    }
    if (!absl::SimpleAtoi(slots, &n) || n < 1 || n > 1024) return bad("bad slot count");
    const std::string host(words[0]);
    if (!seen.insert(host).second) return bad("host " + host + " is named twice");
    hosts.push_back({host, n});
  }
  if (hosts.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("hostfile ", name, " names no host; expected lines of HOST slots=N"));
  }
  return hosts;
}

absl::StatusOr<std::vector<std::string>> ExpandHostlist(absl::string_view list) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat("Slurm host list \"", list, "\": ", why, " (e.g. node[01-04,7],login1)"));
  };
  std::vector<std::string> hosts;
  size_t i = 0;
  while (i < list.size()) {
    // One item: PREFIX or PREFIX[RANGES]SUFFIX, up to the next comma outside brackets.
    size_t end = i;
    int depth = 0;
    while (end < list.size() && (depth > 0 || list[end] != ',')) {
      if (list[end] == '[') ++depth;
      if (list[end] == ']') --depth;
      if (depth < 0 || depth > 1) return bad("unbalanced brackets");
      ++end;
    }
    if (depth != 0) return bad("unbalanced brackets");
    absl::string_view item = list.substr(i, end - i);
    i = end + 1;
    if (item.empty()) return bad("an empty host");
    size_t open = item.find('[');
    if (open == absl::string_view::npos) {
      hosts.emplace_back(item);
      continue;
    }
    size_t close = item.find(']', open);
    absl::string_view prefix = item.substr(0, open), suffix = item.substr(close + 1);
    if (suffix.find('[') != absl::string_view::npos) return bad("more than one bracket");
    for (absl::string_view range : absl::StrSplit(item.substr(open + 1, close - open - 1), ',')) {
      std::pair<absl::string_view, absl::string_view> ab = absl::StrSplit(range, '-');
      if (ab.second.empty()) ab.second = ab.first;
      int lo = 0, hi = 0;
      if (!absl::SimpleAtoi(ab.first, &lo) || !absl::SimpleAtoi(ab.second, &hi) || lo < 0 ||
          hi < lo || hi - lo > 100000) {
        return bad(absl::StrCat("bad range \"", range, "\""));
      }
      const size_t width = ab.first.size();
      for (int n = lo; n <= hi; ++n) {
        std::string digits = absl::StrCat(n);
        if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
        hosts.push_back(absl::StrCat(prefix, digits, suffix));
      }
    }
  }
  if (hosts.empty()) return bad("no host");
  return hosts;
}

absl::StatusOr<std::optional<SlurmTask>> SlurmTaskFromEnv(
    const std::function<const char*(const char*)>& getenv) {
  if (getenv("SLURM_PROCID") == nullptr) return std::optional<SlurmTask>();
  SlurmTask t;
  for (auto [name, out] : std::vector<std::pair<const char*, int*>>{{"SLURM_PROCID", &t.procid},
                                                                    {"SLURM_LOCALID", &t.localid},
                                                                    {"SLURM_NODEID", &t.nodeid},
                                                                    {"SLURM_NTASKS", &t.ntasks}}) {
    const char* v = getenv(name);
    if (v == nullptr || !absl::SimpleAtoi(v, out) || *out < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " is ", v ? absl::StrCat("\"", v, "\"") : "unset",
          "; srun sets it to an integer >= 0 (qsr-run reads SLURM_PROCID, SLURM_LOCALID, "
          "SLURM_NODEID, SLURM_NTASKS, SLURM_STEP_NODELIST)"));
    }
  }
  const char* list = getenv("SLURM_STEP_NODELIST");
  if (list == nullptr) list = getenv("SLURM_JOB_NODELIST");
  if (list == nullptr) {
    return absl::InvalidArgumentError("SLURM_STEP_NODELIST is unset; srun sets it");
  }
  absl::StatusOr<std::vector<std::string>> nodes = ExpandHostlist(list);
  if (!nodes.ok()) return nodes.status();
  t.nodes = std::move(*nodes);
  if (t.localid != 0 || t.ntasks != static_cast<int>(t.nodes.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SLURM_LOCALID is ", t.localid, " and SLURM_NTASKS ", t.ntasks, " for ", t.nodes.size(),
        " nodes: run one qsr-run per node (srun --ntasks-per-node=1 qsr-run --nproc-per-node N "
        "...); it starts the node's N workers"));
  }
  if (t.nodeid >= static_cast<int>(t.nodes.size()) || t.procid >= t.ntasks) {
    return absl::InvalidArgumentError(absl::StrCat("SLURM_NODEID ", t.nodeid, " / SLURM_PROCID ",
                                                   t.procid, " outside the step's ", t.nodes.size(),
                                                   " nodes"));
  }
  return std::optional<SlurmTask>(std::move(t));
}

std::string ShellQuote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW"
                                              "XYZ0123456789_-+=/.,:@%") == std::string::npos) {
    return word;
  }
  return "'" + absl::StrReplaceAll(word, {{"'", "'\\''"}}) + "'";
}

std::vector<std::string> RemoteCommand(const std::string& launcher, const std::string& host,
                                       const std::string& cwd,
                                       const std::vector<std::string>& remote) {
  std::vector<std::string> argv;
  bool placed = false;
  for (absl::string_view w : absl::StrSplit(launcher, ' ', absl::SkipWhitespace())) {
    placed = placed || absl::StrContains(w, "{host}");
    argv.push_back(absl::StrReplaceAll(w, {{"{host}", host}}));
  }
  if (!placed) argv.push_back(host);
  std::vector<std::string> quoted;
  for (const std::string& r : remote) quoted.push_back(ShellQuote(r));
  argv.push_back(absl::StrCat("cd ", ShellQuote(cwd), " && exec ", absl::StrJoin(quoted, " ")));
  return argv;
}

}  // namespace qsr
