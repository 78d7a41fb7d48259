#include "cli/worker_devices.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace qsr {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Error(const std::string& flag, int workers, int gpus) {
  auto r = WorkerDevices(flag, workers, gpus);
  EXPECT_FALSE(r.ok()) << flag;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  return std::string(r.status().message());
}

TEST(WorkerDevicesTest, CpuPutsEveryWorkerOnTheCpu) {
  auto r = WorkerDevices("cpu", 3, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, ElementsAre("cpu", "cpu", "cpu"));
}

TEST(WorkerDevicesTest, CudaGivesWorkerIGpuI) {
  auto r = WorkerDevices("cuda", 2, 4);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, ElementsAre("cuda:0", "cuda:1"));
  EXPECT_THAT(Error("cuda", 3, 2),
              AllOf(HasSubstr("3 workers need 3 GPUs"), HasSubstr("2 GPUs are visible"),
                    HasSubstr("allowed: cpu, cuda")));
  EXPECT_THAT(Error("cuda", 1, 0), HasSubstr("0 GPUs are visible"));
}

TEST(WorkerDevicesTest, ExplicitListOnePerWorker) {
  auto r = WorkerDevices("cuda:1, cuda:0", 2, 2);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(*r, ElementsAre("cuda:1", "cuda:0"));
  EXPECT_THAT(Error("cuda:0,cuda:0", 2, 2), HasSubstr("cuda:0 is named twice"));
  EXPECT_THAT(Error("cuda:0", 2, 2), HasSubstr("names 1 devices for 2 workers"));
  EXPECT_THAT(Error("cuda:0,cuda:2", 2, 2), HasSubstr("cuda:2 does not exist: 2 GPUs"));
  EXPECT_THAT(Error("cuda:0,cuda:x", 2, 2), HasSubstr("\"cuda:x\" is not cuda:N"));
  EXPECT_THAT(Error("cuda:-1", 1, 2), HasSubstr("is not cuda:N"));
  EXPECT_THAT(Error("cuda:0,cpu", 2, 2), HasSubstr("\"cpu\" is not cuda:N"));
}

TEST(WorkerDevicesTest, UnknownDeviceNamesWhatIsAllowed) {
  EXPECT_EQ(Error("gpu", 1, 1),
            "--device gpu: unknown device; allowed: cpu, cuda (worker i on cuda:i), or one cuda:N "
            "per worker separated by commas");
  EXPECT_THAT(Error("", 1, 1), HasSubstr("unknown device"));
}

TEST(VisibleGpusTest, CudaVisibleDevicesWins) {
  EXPECT_EQ(VisibleGpus("0,1,3"), 3);
  EXPECT_EQ(VisibleGpus(""), 0);
  EXPECT_EQ(VisibleGpus("-1"), 0);
  EXPECT_EQ(VisibleGpus("2,-1,3"), 1);
  EXPECT_EQ(VisibleGpus("GPU-8a1b,GPU-77c2"), 2);
}

TEST(VisibleGpusTest, CountsNvidiaDeviceFiles) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("qsr_dev_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  for (const char* name : {"nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia12", "sda"}) {
    std::ofstream(dir / name) << "";
  }
  EXPECT_EQ(VisibleGpus(nullptr, dir.string()), 3);
  EXPECT_EQ(VisibleGpus(nullptr, (dir / "missing").string()), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsr
