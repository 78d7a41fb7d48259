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
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsr {

ProcessGroup::~ProcessGroup() {
  TerminateAll(absl::Seconds(5));
  for (Child& c : children_) {
    if (c.log_fd >= 0) ::close(c.log_fd);
  }
}

namespace {

void WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a full disk loses log lines, never the run
    data += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

absl::StatusOr<int> ProcessGroup::Spawn(const std::string& name,
                                        const std::vector<std::string>& argv) {
  return Spawn(name, argv, Output());
}

absl::StatusOr<int> ProcessGroup::Spawn(const std::string& name,
                                        const std::vector<std::string>& argv,
                                        const Output& output) {
  Child c;
  c.name = name;
  c.argv = argv;
  c.output = output;
  if (!output.log_path.empty()) {
    c.log_fd = ::open(output.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (c.log_fd < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot write the log ", output.log_path, ": ", std::strerror(errno)));
    }
  }
  if (absl::Status s = Start(c); !s.ok()) {
    if (c.log_fd >= 0) ::close(c.log_fd);
    return s;
  }
  children_.push_back(std::move(c));
  return static_cast<int>(children_.size()) - 1;
}

absl::Status ProcessGroup::Restart(int i) {
  if (i < 0 || i >= size() || !children_[i].exit_code) {
    return absl::FailedPreconditionError(absl::StrCat("child ", i, " is not an exited child"));
  }
  Child& c = children_[i];
  Flush(c);  // what the old process wrote last goes to its log before the new one's output
  c.exit_code.reset();
  c.pid = -1;
  return Start(c);
}

void ProcessGroup::Flush(Child& c) {
  if (c.fd < 0) return;
  char buf[8192];
  pollfd p{c.fd, POLLIN, 0};
  for (int n = 0; n < 64 && ::poll(&p, 1, 0) > 0; ++n) {
    ssize_t r = ::read(c.fd, buf, sizeof(buf));
    if (r <= 0) break;
    c.partial.append(buf, static_cast<size_t>(r));
  }
  Drain(c, true);
  ::close(c.fd);
  c.fd = -1;
}

absl::Status ProcessGroup::Start(Child& c) {
  std::vector<char*> args;
  for (const std::string& a : c.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  if (!c.output.piped) {
    pid_t pid = ::fork();
    if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    if (pid == 0) {
      if (c.log_fd >= 0) {
        ::dup2(c.log_fd, STDOUT_FILENO);
        ::dup2(c.log_fd, STDERR_FILENO);
      }
      ::execvp(args[0], args.data());
      std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
      ::_exit(kCannotExec);
    }
    c.pid = pid;
    return absl::OkStatus();
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::execvp(args[0], args.data());  // a bare name (ssh) is looked up in PATH
    std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
    ::_exit(kCannotExec);
  }
  ::close(fds[1]);
  c.pid = pid;
  c.fd = fds[0];
  return absl::OkStatus();
}

void ProcessGroup::Drain(Child& c, bool eof) {
  size_t start = 0;
  for (size_t nl; (nl = c.partial.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (c.log_fd >= 0) WriteAll(c.log_fd, c.partial.data() + start, nl + 1 - start);
    if (c.output.echo) {
      std::printf("[%s] %.*s\n", c.name.c_str(), static_cast<int>(nl - start),
                  c.partial.data() + start);
    }
  }
  c.partial.erase(0, start);
  if (eof && !c.partial.empty()) {
    if (c.log_fd >= 0) {
      c.partial += '\n';
      WriteAll(c.log_fd, c.partial.data(), c.partial.size());
      c.partial.pop_back();
    }
    if (c.output.echo) std::printf("[%s] %s\n", c.name.c_str(), c.partial.c_str());
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
  for (Child& c : children_) Flush(c);
}

void ProcessGroup::Signal(int i, int sig) {
  if (i < 0 || i >= size()) return;
  const Child& c = children_[i];
  if (c.pid > 0 && !c.exit_code) ::kill(c.pid, sig);
}

absl::StatusOr<std::string> WaitForPortFile(ProcessGroup& group, int child, const std::string& path,
                                            absl::Duration timeout,
                                            const volatile std::sig_atomic_t* signal) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    group.Pump(absl::Milliseconds(50));
    std::ifstream in(path);
    std::string port;
    std::getline(in, port);
    while (!port.empty() && (port.back() == '\n' || port.back() == ' ')) port.pop_back();
    if (!port.empty()) return port;
    if (*signal) return absl::CancelledError(absl::StrCat("signal ", *signal));
    if (group.ExitCode(child)) {
      return absl::UnavailableError(
          absl::StrCat(group.Name(child), " exited (", *group.ExitCode(child), ") before serving"));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(group.Name(child), " wrote no port within ", absl::FormatDuration(timeout)));
    }
  }
}

}  // namespace qsr
