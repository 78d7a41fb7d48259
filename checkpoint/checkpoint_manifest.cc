#include "checkpoint/checkpoint_manifest.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/json_writer.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, " does not exist or cannot be opened"));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return text.str();
}

// yaml-cpp reads JSON (a subset of YAML's flow style), so the manifest needs no JSON parser.
template <typename T>
absl::Status Get(const YAML::Node& root, const char* key, T& out, const std::string& source) {
  const YAML::Node node = root[key];
  if (!node) return absl::DataLossError(absl::StrCat(source, ": missing \"", key, "\""));
  try {
    out = node.as<T>();
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat(source, ": \"", key, "\" is malformed: ", e.msg));
  }
  return absl::OkStatus();
}

// "step=12" -> 12; -1 for anything else.
int64_t StepOfFolder(const std::string& name) {
  absl::string_view rest = name;
  if (!absl::ConsumePrefix(&rest, "step=")) return -1;
  int64_t step = -1;
  if (!absl::SimpleAtoi(rest, &step) || step < 0) return -1;
  return step;
}

}  // namespace

std::string CheckpointStepDir(const std::string& checkpoint_dir, int64_t step) {
  return absl::StrCat(checkpoint_dir, "/step=", step);
}

absl::StatusOr<ManifestFile> DigestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, " is missing"));
  ManifestFile f;
  f.path = path;
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buffer.data()), static_cast<uInt>(n));
    f.bytes += n;
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  f.crc32 = static_cast<uint32_t>(crc);
  return f;
}

std::string ManifestToJson(const CheckpointManifest& m) {
  std::vector<std::string> files;
  for (const ManifestFile& f : m.files) {
    files.push_back(JsonObject()
                        .Add("path", f.path)
                        .Add("bytes", f.bytes)
                        .Add("crc32", static_cast<int64_t>(f.crc32))
                        .str());
  }
  return JsonObject()
             .Add("format", 1)
             .Add("step", m.step)
             .Add("epoch", m.epoch)
             .Add("round", m.round)
             .Add("h", m.h)
             .Add("world_size", m.world_size)
             .Add("model", m.model)
             .Add("optimizer", m.optimizer)
             .Add("per_rank", m.per_rank)
             .AddRaw("files", "[" + absl::StrJoin(files, ",") + "]")
             .Add("recipe", m.recipe_yaml)
             .str() +
         "\n";
}

absl::StatusOr<CheckpointManifest> ParseManifest(const std::string& json,
                                                 const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(json);
  } catch (const YAML::Exception& e) {
    return absl::DataLossError(absl::StrCat(source, " is not valid JSON (truncated?): ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::DataLossError(absl::StrCat(source, " is not a JSON object (empty or truncated?)"));
  }
  CheckpointManifest m;
  int64_t format = 0;
  for (absl::Status s :
       {Get(root, "format", format, source), Get(root, "step", m.step, source),
        Get(root, "epoch", m.epoch, source), Get(root, "round", m.round, source),
        Get(root, "h", m.h, source), Get(root, "world_size", m.world_size, source),
        Get(root, "model", m.model, source), Get(root, "optimizer", m.optimizer, source),
        Get(root, "per_rank", m.per_rank, source), Get(root, "recipe", m.recipe_yaml, source)}) {
    if (!s.ok()) return s;
  }
  if (format != 1) {
    return absl::DataLossError(absl::StrCat(source, ": format ", format, " is not supported (1)"));
  }
  const YAML::Node files = root["files"];
  if (!files || !files.IsSequence()) {
    return absl::DataLossError(absl::StrCat(source, ": \"files\" is missing or not a list"));
  }
  for (const YAML::Node& node : files) {
    ManifestFile f;
    int64_t crc = 0;
    for (absl::Status s : {Get(node, "path", f.path, source), Get(node, "bytes", f.bytes, source),
                           Get(node, "crc32", crc, source)}) {
      if (!s.ok()) return s;
    }
    if (f.path.empty() || f.path[0] == '/' || f.path.find("..") != std::string::npos) {
      return absl::DataLossError(
          absl::StrCat(source, ": file path \"", f.path, "\" is not relative to the checkpoint"));
    }
    f.crc32 = static_cast<uint32_t>(crc);
    m.files.push_back(std::move(f));
  }
  return m;
}

absl::Status WriteManifest(const std::string& dir, const CheckpointManifest& manifest) {
  const std::string path = absl::StrCat(dir, "/", kManifestName);
  const std::string tmp = path + ".tmp";
  const std::string text = ManifestToJson(manifest);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot create ", tmp));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n <= 0) {
      ::close(fd);
      std::remove(tmp.c_str());
      return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
    }
    written += static_cast<size_t>(n);
  }
  // The manifest is the commit: it must reach the disk before the rename makes it visible.
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot commit ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointManifest> VerifyCheckpoint(const std::string& manifest_path) {
  absl::StatusOr<std::string> text = ReadWholeFile(manifest_path);
  if (!text.ok()) {
    return absl::NotFoundError(
        absl::StrCat("manifest ", manifest_path, " is missing (checkpoint incomplete)"));
  }
  absl::StatusOr<CheckpointManifest> m = ParseManifest(*text, "manifest " + manifest_path);
  if (!m.ok()) return m.status();
  const std::string dir = fs::path(manifest_path).parent_path().string();
  for (const ManifestFile& want : m->files) {
    const std::string path = dir.empty() ? want.path : dir + "/" + want.path;
    absl::StatusOr<ManifestFile> got = DigestFile(path);
    if (!got.ok())
      return absl::DataLossError(absl::StrCat("checkpoint file ", path, " is missing"));
    if (got->bytes != want.bytes) {
      return absl::DataLossError(absl::StrCat("checkpoint file ", path, " has ", got->bytes,
                                              " bytes, the manifest says ", want.bytes,
                                              " (truncated or overwritten)"));
    }
    if (got->crc32 != want.crc32) {
      return absl::DataLossError(absl::StrCat("checkpoint file ", path, " is corrupt: CRC-32 ",
                                              got->crc32, ", the manifest says ", want.crc32));
    }
  }
  return m;
}

absl::StatusOr<ChosenCheckpoint> NewestGoodCheckpoint(const std::string& checkpoint_dir) {
  std::error_code ec;
  if (!fs::is_directory(checkpoint_dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint directory ", checkpoint_dir, " does not exist"));
  }
  std::vector<std::pair<int64_t, std::string>> folders;
  for (const fs::directory_entry& e : fs::directory_iterator(checkpoint_dir, ec)) {
    const int64_t step = StepOfFolder(e.path().filename().string());
    if (step >= 0 && e.is_directory(ec)) folders.emplace_back(step, e.path().string());
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot list checkpoint directory ", checkpoint_dir, ": ", ec.message()));
  }
  std::sort(folders.rbegin(), folders.rend());
  ChosenCheckpoint chosen;
  for (const auto& [step, folder] : folders) {
    const std::string manifest = absl::StrCat(folder, "/", kManifestName);
    absl::StatusOr<CheckpointManifest> m = VerifyCheckpoint(manifest);
    if (m.ok() && m->step != step) {
      m = absl::DataLossError(absl::StrCat("manifest ", manifest, " is for step ", m->step));
    }
    if (!m.ok()) {
      chosen.skipped.push_back(std::string(m.status().message()));
      continue;
    }
    chosen.manifest_path = manifest;
    chosen.manifest = *std::move(m);
    return chosen;
  }
  return absl::NotFoundError(absl::StrCat(
      "no complete checkpoint under ", checkpoint_dir,
      chosen.skipped.empty() ? " (no step=S folders)"
                             : absl::StrCat("; skipped: ", absl::StrJoin(chosen.skipped, "; "))));
}

absl::StatusOr<ChosenCheckpoint> ApplyResume(Recipe& recipe,
                                             const std::string& default_checkpoint_dir) {
  ChosenCheckpoint chosen;
  if (recipe.resume.empty()) return chosen;
  if (recipe.resume == "latest") {
    const std::string dir =
        recipe.checkpoint_dir.empty() ? default_checkpoint_dir : recipe.checkpoint_dir;
    absl::StatusOr<ChosenCheckpoint> newest = NewestGoodCheckpoint(dir);
    if (!newest.ok()) {
      return absl::Status(newest.status().code(),
                          absl::StrCat("resume: latest: ", newest.status().message()));
    }
    chosen = *std::move(newest);
  } else {
    std::error_code ec;
    chosen.manifest_path = fs::is_directory(recipe.resume, ec)
                               ? absl::StrCat(recipe.resume, "/", kManifestName)
                               : recipe.resume;
    absl::StatusOr<CheckpointManifest> m = VerifyCheckpoint(chosen.manifest_path);
    if (!m.ok()) {
      return absl::Status(m.status().code(),
                          absl::StrCat("resume: ", recipe.resume, ": ", m.status().message()));
    }
    chosen.manifest = *std::move(m);
  }
  const CheckpointManifest& m = chosen.manifest;
  if (m.world_size != recipe.workers) {
    return absl::FailedPreconditionError(
        absl::StrCat("resume: ", chosen.manifest_path, " was written by ", m.world_size,
                     " workers; this run has workers: ", recipe.workers,
                     " (each worker's optimizer state and data shard belong to its rank)"));
  }
  const std::string dir = fs::path(chosen.manifest_path).parent_path().string();
  const auto in_dir = [&](const std::string& rel) {
    return rel.empty() ? std::string() : (dir.empty() ? rel : dir + "/" + rel);
  };
  recipe.resume_from_epoch = -1;
  recipe.resume_from_step = m.step;
  recipe.resume_pth = in_dir(m.model);
  recipe.optimizer_resume_pth = in_dir(m.optimizer);
  if (absl::Status s = ResolveRecipe(recipe); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("resume: ", chosen.manifest_path, ": ", s.message()));
  }
  return chosen;
}

}  // namespace qsr
