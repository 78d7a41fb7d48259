#include "checkpoint/checkpoint_manifest.h"

#include <fcntl.h>
#include <unistd.h>
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
#include "proto/json/json_line.h"
#include "qsr/v1/run_log.pb.h"

namespace qsr {
namespace {

namespace fs = std::filesystem;

constexpr int kManifestFormat = 1;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, " does not exist or cannot be opened"));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return text.str();
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
  v1::CheckpointManifestRecord r;
  r.set_format(kManifestFormat);
  r.set_step(static_cast<int32_t>(m.step));
  r.set_epoch(static_cast<int32_t>(m.epoch));
  r.set_round(static_cast<int32_t>(m.round));
  r.set_h(static_cast<int32_t>(m.h));
  r.set_world_size(static_cast<int32_t>(m.world_size));
  r.set_model(m.model);
  r.set_optimizer(m.optimizer);
  r.set_per_rank(m.per_rank);
  for (const ManifestFile& f : m.files) {
    v1::ManifestFileRecord* file = r.add_files();
    file->set_path(f.path);
    file->set_bytes(static_cast<double>(f.bytes));
    file->set_crc32(f.crc32);
  }
  r.set_recipe(m.recipe_yaml);
  return ToJsonLine(r) + "\n";
}

absl::StatusOr<CheckpointManifest> ParseManifest(const std::string& json,
                                                 const std::string& source) {
  JsonLineOptions options;
  // A newer qsr may add fields; `format` says when the record means something else.
  options.ignore_unknown_fields = true;
  options.required_numbers = {"format", "step", "epoch", "round", "h", "world_size"};
  options.required = {"model", "optimizer", "per_rank", "files", "recipe"};
  absl::StatusOr<v1::CheckpointManifestRecord> r =
      ParseJsonLine<v1::CheckpointManifestRecord>(json, options);
  if (!r.ok()) {
    return absl::DataLossError(
        absl::StrCat(source, " is not a manifest (empty or truncated?): ", r.status().message()));
  }
  if (r->format() != kManifestFormat) {
    return absl::DataLossError(absl::StrCat(source, ": format ", r->format(), " is not supported (",
                                            kManifestFormat, ")"));
  }
  CheckpointManifest m;
  m.step = r->step();
  m.epoch = r->epoch();
  m.round = r->round();
  m.h = r->h();
  m.world_size = r->world_size();
  m.model = r->model();
  m.optimizer = r->optimizer();
  m.per_rank = r->per_rank();
  m.recipe_yaml = r->recipe();
  for (const v1::ManifestFileRecord& file : r->files()) {
    ManifestFile f;
    f.path = file.path();
    if (f.path.empty() || f.path[0] == '/' || f.path.find("..") != std::string::npos) {
      return absl::DataLossError(
          absl::StrCat(source, ": file path \"", f.path, "\" is not relative to the checkpoint"));
    }
    f.bytes = static_cast<int64_t>(file.bytes());
    f.crc32 = file.crc32();
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
