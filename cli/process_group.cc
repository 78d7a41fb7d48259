#include "cli/process_group.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace qsr {

ProcessGroup::~ProcessGroup() { TerminateAll(absl::Seconds(5)); }

absl::StatusOr<int> ProcessGroup::Spawn(const std::string& name,
                                        const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(fds[1]);
  Child c;
  c.name = name;
  c.pid = pid;
  c.fd = fds[0];
  children_.push_back(std::move(c));
  return static_cast<int>(children_.size()) - 1;
}

void ProcessGroup::Drain(Child& c, bool eof) {
  size_t start = 0;
  for (size_t nl; (nl = c.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::printf("[%s] %.*s\n", c.name.c_str(), static_cast<int>(nl - start),
                c.partial.data() + start);
  }
  c.partial.erase(0, start);
  if (eof && !c.partial.empty()) {
    std::printf("[%s] %s\n", c.name.c_str(), c.partial.c_str());
    c.partial.clear();
  }
  std::fflush(stdout);
}

void ProcessGroup::Pump(absl::Duration timeout) {
  std::vector<pollfd> fds;
  std::vector<Child*> owners;
  for (Child& c : children_) {
    if (c.fd >= 0) {
      fds.push_back({c.fd, POLLIN, 0});
      owners.push_back(&c);
    }
  }
  if (fds.empty()) {
    // Nothing to read: wait for a child to exit instead.
    absl::SleepFor(std::min(timeout, absl::Milliseconds(20)));
  } else {
    int ready =
        ::poll(fds.data(), fds.size(), static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    for (size_t i = 0; ready > 0 && i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buf[8192];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        owners[i]->partial.append(buf, static_cast<size_t>(n));
        Drain(*owners[i], false);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        Drain(*owners[i], true);
        ::close(owners[i]->fd);
        owners[i]->fd = -1;
      }
    }
  }
  Reap(false);
}

void ProcessGroup::Reap(bool block) {
  for (Child& c : children_) {
    if (c.exit_code || c.pid < 0) continue;
    int status = 0;
    pid_t r = ::waitpid(c.pid, &status, block ? 0 : WNOHANG);
    if (r == c.pid) {
      c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  }
}

bool ProcessGroup::AllExited() const {
  for (const Child& c : children_) {
    if (!c.exit_code) return false;
  }
  return true;
}

void ProcessGroup::TerminateAll(absl::Duration grace) {
  for (Child& c : children_) {
    if (!c.exit_code) ::kill(c.pid, SIGTERM);
  }
  const absl::Time deadline = absl::Now() + grace;
  while (!AllExited() && absl::Now() < deadline) Pump(absl::Milliseconds(50));
  for (Child& c : children_) {
    if (!c.exit_code) ::kill(c.pid, SIGKILL);
  }
  Reap(true);
  for (Child& c : children_) {
    if (c.fd >= 0) {
      Drain(c, true);
      ::close(c.fd);
      c.fd = -1;
    }
  }
}

void ProcessGroup::Signal(int i, int sig) {
  if (i < 0 || i >= size()) return;
  const Child& c = children_[i];
  if (c.pid > 0 && !c.exit_code) ::kill(c.pid, sig);
}

}  // namespace qsr
