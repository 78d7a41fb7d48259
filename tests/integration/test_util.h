// Helpers for the multi-process tests: temporary directories, running a command with a deadline,
// and reading files. Everything here is bounded in time.
#ifndef QSR_TESTS_INTEGRATION_TEST_UTIL_H_
#define QSR_TESTS_INTEGRATION_TEST_UTIL_H_

#include <string>
#include <vector>

namespace qsr::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // 124 when the time limit killed it
  std::string output;  // stdout and stderr together
};

// Runs `argv` (no shell) with a time limit, capturing its output.
CommandResult RunCommand(const std::vector<std::string>& argv, int timeout_s = 60);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& contents);
std::vector<std::string> ReadLines(const std::string& path);

// Writes a small CIFAR-10 in its binary format under `dir`/cifar-10-batches-bin:
// data_batch_1..5.bin with `per_batch` records each and test_batch.bin with `test` records.
// Records are 1 label byte (i % 10) and 3 x 32 x 32 planar pixel bytes: noisy images whose
// dominant colour channel is label % 3 and whose rows 3*label..3*label+2 are bright, so every
// class is separable from the others and a model learns them in a few dozen steps.
void WriteCifar10(const std::string& dir, int per_batch, int test, unsigned seed);

// A loopback TCP port that was free a moment ago (the OS chose it), or 0 if none could be bound.
int FreeLoopbackPort();

// Extracts a field's raw value from a flat one-line JSON object ("" when absent).
std::string JsonField(const std::string& json, const std::string& key);

}  // namespace qsr::testing

#endif  // QSR_TESTS_INTEGRATION_TEST_UTIL_H_
