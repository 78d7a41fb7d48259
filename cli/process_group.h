// ProcessGroup: child processes started and watched together, their output interleaved line by
// line with a prefix per process ("[w0] ..."), so a person can read a multi-process run. A child
// may instead (or also) have its output appended to a log file of its own.
//
// Lifecycle: Spawn() each child; call Pump() repeatedly (it forwards output and reaps children);
// Restart() starts an exited child again with the same command and log; TerminateAll() sends
// SIGTERM, then SIGKILL to any still alive after a grace period.
//
// Not thread-safe: one thread owns the group.
#ifndef QSR_CLI_PROCESS_GROUP_H_
#define QSR_CLI_PROCESS_GROUP_H_

#include <sys/types.h>

#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace qsr {

// The exit code of a child whose program could not be started (as a shell's).
inline constexpr int kCannotExec = 127;

class ProcessGroup {
 public:
  ProcessGroup() = default;
  ~ProcessGroup();  // Terminates whatever is still running.

  struct Output {
    bool echo = true;      // print each line to stdout as "[name] line"
    std::string log_path;  // when set, append the child's output to this file too
    // false: the child writes to log_path itself (no pipe; echo is ignored), so its output
    // needs no Pump() to flow: for a child left running while the caller does something else.
    bool piped = true;
  };

  // Starts `argv` (argv[0] without a slash is looked up in PATH) with stdout and stderr
  // captured; returns the child's index. A program that cannot be started exits kCannotExec
  // after writing why to its output.
  absl::StatusOr<int> Spawn(const std::string& name, const std::vector<std::string>& argv);
  absl::StatusOr<int> Spawn(const std::string& name, const std::vector<std::string>& argv,
                            const Output& output);
  // Starts child `i`, which has exited, again: same name, command and output (the log is
  // appended to). Its exit code is cleared.
  absl::Status Restart(int i);

  // Forwards available output (waiting at most `timeout` for some) and reaps exited children.
  void Pump(absl::Duration timeout);

  // The exit code of child `i` once it has exited (128 + signal when killed).
  std::optional<int> ExitCode(int i) const { return children_[i].exit_code; }
  bool AllExited() const;
  const std::string& Name(int i) const { return children_[i].name; }
  pid_t Pid(int i) const { return children_[i].pid; }
  const std::string& LogPath(int i) const { return children_[i].output.log_path; }
  int size() const { return static_cast<int>(children_.size()); }

  void TerminateAll(absl::Duration grace);
  // Sends `sig` to child `i` if it is still running (tests use it to inject faults).
  void Signal(int i, int sig);

 private:
  struct Child {
    std::string name;
    std::vector<std::string> argv;
    Output output;
    int log_fd = -1;
    pid_t pid = -1;
    int fd = -1;  // read end of the output pipe
    std::string partial;
    std::optional<int> exit_code;
  };
  absl::Status Start(Child& c);
  void Drain(Child& c, bool eof);
  // Reads what an exited child left in its pipe, writes it out and closes the pipe.
  void Flush(Child& c);
  void Reap(bool block);

  std::vector<Child> children_;
};

// Waits until child `child` of `group` has written a port number to `path` (as the coordinator
// and the agent do once they serve; the file is removed before the child starts), pumping the
// group meanwhile. The port, without its newline; Unavailable when the child exits first,
// DeadlineExceeded after `timeout`, Cancelled once `*signal` is set.
absl::StatusOr<std::string> WaitForPortFile(ProcessGroup& group, int child, const std::string& path,
                                            absl::Duration timeout,
                                            const volatile std::sig_atomic_t* signal);

}  // namespace qsr

#endif  // QSR_CLI_PROCESS_GROUP_H_
