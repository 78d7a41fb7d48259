#include "serving/port_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace qsr {
namespace {

absl::Status CannotWrite(const std::string& path, int error) {
  return absl::UnavailableError(
      absl::StrCat("cannot write the port file ", path, ": ", std::strerror(error)));
}

}  // namespace

absl::Status WritePortFile(const std::string& path, int port) {
  if (path.empty()) return absl::OkStatus();
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp);
  if (!out) return CannotWrite(path, errno);
  out << port << "\n";
  out.close();
  if (!out) {
    const int error = errno;
    std::remove(tmp.c_str());
    return CannotWrite(path, error);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(tmp.c_str());
    return CannotWrite(path, error);
  }
  return absl::OkStatus();
}

}  // namespace qsr
