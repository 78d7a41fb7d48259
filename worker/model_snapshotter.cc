#include "worker/model_snapshotter.h"

#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/snapshot_interval.h"
#include "worker/model_export.h"

namespace qsr {
namespace {

constexpr char kIndexName[] = "snapshots.jsonl";

}  // namespace

absl::StatusOr<std::unique_ptr<ModelSnapshotter>> ModelSnapshotter::Create(
    SnapshotOptions options) {
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("--snapshot-dir: a directory is required");
  }
  if (absl::Status interval = CheckSnapshotInterval(options.every_epochs); !interval.ok()) {
    return interval;
  }
  if (options.steps_per_epoch <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshots need steps_per_epoch > 0, not ", options.steps_per_epoch));
  }
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("--snapshot-dir: cannot create ", options.dir, ": ", ec.message()));
  }
  const std::string index = absl::StrCat(options.dir, "/", kIndexName);
  if (!std::ofstream(index, std::ios::trunc)) {
    return absl::PermissionDeniedError(absl::StrCat("--snapshot-dir: cannot write ", index));
  }
  auto snapshotter = std::unique_ptr<ModelSnapshotter>(new ModelSnapshotter(std::move(options)));
  snapshotter->interval_steps_ = snapshotter->options_.every_epochs *
                                 static_cast<double>(snapshotter->options_.steps_per_epoch);
  return snapshotter;
}

absl::Status ModelSnapshotter::Begin(int64_t step, const torch::nn::Module& model) {
  if (begun_) return absl::OkStatus();
  begun_ = true;
  begin_ = options_.now();
  // A pause that began before the clock did counts from here.
  if (pause_depth_ > 0) pause_start_ = begin_;
  return Write(step, model);
}

absl::Status ModelSnapshotter::AfterSync(int64_t step, const torch::nn::Module& model) {
  if (!begun_) return absl::FailedPreconditionError("ModelSnapshotter::AfterSync before Begin");
  // A small tolerance: 1/16 of 468 steps is 29.25, and step counts are exact integers.
  if (static_cast<double>(step - last_step_) + 1e-9 < interval_steps_) return absl::OkStatus();
  return Write(step, model);
}

absl::Status ModelSnapshotter::Final(int64_t step, const torch::nn::Module& model) {
  if (!begun_) return absl::FailedPreconditionError("ModelSnapshotter::Final before Begin");
  if (step == last_step_) return absl::OkStatus();
  return Write(step, model);
}

absl::Duration ModelSnapshotter::Clock() const {
  if (!begun_) return absl::ZeroDuration();
  const absl::Time now = options_.now();
  absl::Duration paused = paused_total_;
  if (pause_depth_ > 0) paused += now - pause_start_;
  return now - begin_ - paused;
}

absl::Status ModelSnapshotter::Write(int64_t step, const torch::nn::Module& model) {
  const double clock_s = absl::ToDoubleSeconds(Clock());
  const absl::Time start = options_.now();
  const double wall_s = absl::ToDoubleSeconds(start - begin_);
  Paused paused(this);
  const std::string file = absl::StrFormat("snap-%08d.pt", step);
  if (absl::Status s = SavePyTorchStateDict(model, absl::StrCat(options_.dir, "/", file));
      !s.ok()) {
    return s;
  }
  const double write_s = absl::ToDoubleSeconds(options_.now() - start);
  const std::string index = absl::StrCat(options_.dir, "/", kIndexName);
  std::ofstream out(index, std::ios::app);
  out << absl::StrFormat(
      "{\"step\":%d,\"epoch\":%.6f,\"clock_s\":%.6f,\"wall_s\":%.6f,\"write_s\":%.6f,"
      "\"file\":\"%s\"}\n",
      step, static_cast<double>(step) / static_cast<double>(options_.steps_per_epoch), clock_s,
      wall_s, write_s, file);
  out.flush();
  if (!out) return absl::DataLossError(absl::StrCat("writing ", index, " failed (disk full?)"));
  last_step_ = step;
  ++snapshots_;
  return absl::OkStatus();
}

void ModelSnapshotter::Pause() {
  if (pause_depth_++ == 0) pause_start_ = options_.now();
}

void ModelSnapshotter::Resume() {
  if (--pause_depth_ == 0 && begun_) paused_total_ += options_.now() - pause_start_;
}

ModelSnapshotter::Paused::Paused(ModelSnapshotter* snapshotter) : snapshotter_(snapshotter) {
  if (snapshotter_ != nullptr) snapshotter_->Pause();
}

ModelSnapshotter::Paused::~Paused() {
  if (snapshotter_ != nullptr) snapshotter_->Resume();
}

}  // namespace qsr
