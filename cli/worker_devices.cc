#include "cli/worker_devices.h"

#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace qsr {
namespace {

constexpr char kAllowed[] =
    "allowed: cpu, cuda (worker i on cuda:i), or one cuda:N per worker separated by commas";

absl::Status Bad(const std::string& flag, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("--device ", flag, ": ", problem, "; ", kAllowed));
}

std::string GpuCount(int visible_gpus) {
  return absl::StrCat(visible_gpus, " GPU", visible_gpus == 1 ? " is" : "s are",
                      " visible (CUDA_VISIBLE_DEVICES, or /dev/nvidiaN when it is unset)");
}

}  // namespace

absl::StatusOr<std::vector<std::string>> WorkerDevices(const std::string& flag, int workers,
                                                       int visible_gpus) {
  if (workers < 1) return absl::InvalidArgumentError(absl::StrCat("workers ", workers, " < 1"));
  const std::string value(absl::StripAsciiWhitespace(flag));
  if (value == "cpu") return std::vector<std::string>(workers, "cpu");
  if (value == "cuda") {
    if (visible_gpus < workers) {
      return Bad(flag, absl::StrCat(workers, " workers need ", workers, " GPUs, but ",
                                    GpuCount(visible_gpus)));
    }
    std::vector<std::string> out;
    for (int i = 0; i < workers; ++i) out.push_back(absl::StrCat("cuda:", i));
    return out;
  }
  if (!absl::StartsWith(value, "cuda:")) return Bad(flag, "unknown device");
  std::vector<std::string> out;
  std::set<int> seen;
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    const std::string entry(absl::StripAsciiWhitespace(part));
    absl::string_view index_text = entry;
    int index = -1;
    if (!absl::ConsumePrefix(&index_text, "cuda:") || index_text.empty() ||
        !absl::ascii_isdigit(static_cast<unsigned char>(index_text[0])) ||
        !absl::SimpleAtoi(index_text, &index)) {
      return Bad(flag, absl::StrCat("\"", entry, "\" is not cuda:N"));
    }
    if (index >= visible_gpus) {
      return Bad(flag, absl::StrCat("cuda:", index, " does not exist: ", GpuCount(visible_gpus)));
    }
    if (!seen.insert(index).second) {
      return Bad(flag,
                 absl::StrCat("cuda:", index, " is named twice (NCCL allows one worker per GPU)"));
    }
    out.push_back(absl::StrCat("cuda:", index));
  }
  if (static_cast<int>(out.size()) != workers) {
    return Bad(flag, absl::StrCat("names ", out.size(), " devices for ", workers, " workers"));
  }
  return out;
}

int VisibleGpus(const char* cuda_visible_devices, const std::string& dev_dir) {
  if (cuda_visible_devices != nullptr) {
    int count = 0;
    for (absl::string_view part : absl::StrSplit(cuda_visible_devices, ',')) {
      part = absl::StripAsciiWhitespace(part);
      // CUDA stops at the first invalid entry; "" and "-1" hide every GPU.
      if (part.empty() || part[0] == '-') break;
      ++count;
    }
    return count;
  }
  int count = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dev_dir, ec)) {
    std::string name = entry.path().filename().string();
    absl::string_view rest = name;
    if (!absl::ConsumePrefix(&rest, "nvidia") || rest.empty()) continue;
    bool digits = true;
    for (char c : rest) digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (digits) ++count;
  }
  return count;
}

}  // namespace qsr
