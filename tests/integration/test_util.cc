#include "tests/integration/test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_split.h"

namespace qsr::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base ? base : "/tmp") + "/qsr-test-XXXXXX";
  char* made = ::mkdtemp(templ.data());
  path_ = made ? made : templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult RunCommand(const std::vector<std::string>& argv, int timeout_s) {
  TempDir dir;
  const std::string out = dir.path() + "/out";
  // Output goes to a file through a shell redirect so the child is not blocked on a pipe.
  std::string cmd = "timeout -k 5 " + std::to_string(timeout_s);
  for (const std::string& a : argv) {
    std::string quoted = "'";
    for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    cmd += " " + quoted + "'";
  }
  cmd += " >" + out + " 2>&1";
  int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.output = ReadFile(out);
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path) << contents;
}

std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  for (absl::string_view l : absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty())) {
    lines.emplace_back(l);
  }
  return lines;
}

std::string JsonField(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  size_t start = at + needle.size();
  size_t end = start;
  if (json[start] == '"') {
    end = json.find('"', start + 1);
    return json.substr(start + 1, end - start - 1);
  }
  while (end < json.size() && json[end] != ',' && json[end] != '}') ++end;
  return json.substr(start, end - start);
}

namespace {

std::string CifarRecords(int n, std::mt19937& rng) {
  std::uniform_int_distribution<int> noise(-40, 40);
  std::string out;
  for (int i = 0; i < n; ++i) {
    const int label = i % 10;
    out.push_back(static_cast<char>(label));
    for (int c = 0; c < 3; ++c) {  // planar: the R plane, then G, then B
      const int base = c == label % 3 ? 200 : 50;
      for (int p = 0; p < 1024; ++p) {
        // Rows 3*label .. 3*label+2 are bright in every channel: each class has its own band.
        const int row = p / 32;
        const int value = row / 3 == label ? 250 : base + noise(rng);
        out.push_back(static_cast<char>(std::clamp(value, 0, 255)));
      }
    }
  }
  return out;
}

}  // namespace

void WriteCifar10(const std::string& dir, int per_batch, int test, unsigned seed) {
  std::mt19937 rng(seed);
  const std::string folder = dir + "/cifar-10-batches-bin";
  std::filesystem::create_directories(folder);
  for (int i = 1; i <= 5; ++i) {
    WriteFile(folder + "/data_batch_" + std::to_string(i) + ".bin", CifarRecords(per_batch, rng));
  }
  WriteFile(folder + "/test_batch.bin", CifarRecords(test, rng));
}

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace qsr::testing
