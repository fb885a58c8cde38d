// Test support: run the real binaries as child processes and read what they print. Used from
// the test's own thread.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace test {

class Process {
 public:
  // Starts argv[0] with argv, stdout and stderr captured (separately). Throws on failure.
  explicit Process(std::vector<std::string> argv);
  ~Process();  // kills (SIGKILL) and reaps a child still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // The next line of stdout (without the newline); empty if none came within the limit.
  std::string read_line(std::chrono::milliseconds limit = std::chrono::seconds(20));
  // Marks every complete line printed so far as read: read_line() returns only later ones.
  void skip_printed_lines();
  // Reads until stderr holds needle (true) or the limit passed or stderr closed (false).
  bool wait_for_err(const std::string& needle,
                    std::chrono::milliseconds limit = std::chrono::seconds(20));
  void signal(int sig);
  // Waits for exit (killing it after the limit); returns the exit code, or 128 + signal.
  int wait(std::chrono::milliseconds limit = std::chrono::seconds(120));
  // Everything printed so far (after wait(): everything).
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  void pump(int timeout_ms);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  std::size_t line_pos_ = 0;
  int status_ = -1;
};

// myriad-server (or any program printing its start-up line) as a child process. The
// constructor waits for the line "myriad-server: <protocol> on <address> | ..." and throws
// std::runtime_error, with what the process printed, if it does not come.
class ChildServer {
 public:
  explicit ChildServer(std::vector<std::string> argv);
  Process& process() { return *process_; }
  pid_t pid() const { return process_->pid(); }
  const std::string& startup_line() const { return startup_line_; }
  const std::string& address() const { return address_; }
  // With --stats: reads lines printed from now on until a stats line for which accept(line)
  // holds; returns it, or "" if none came within the limit (a hang guard). Lines printed
  // before the call are skipped: they describe the past.
  std::string wait_for_stats(const std::function<bool(const std::string&)>& accept,
                             std::chrono::milliseconds limit = std::chrono::seconds(60));
  // Sends sig, waits for the exit and returns its code; the final counters are in stopped().
  int stop(int sig = 15 /* SIGTERM */);
  // The "stopped: key=value ..." line printed at exit ("" before stop() or if it never came).
  std::string stopped() const;

 private:
  std::unique_ptr<Process> process_;
  std::string startup_line_;
  std::string address_;
};

// The address in a start-up line ("myriad-server: echo on 127.0.0.1:7000 | ..."); "" if none.
std::string startup_address(const std::string& line);
// "key=value key=value" -> value of key (as a number); -1 if absent.
long long field(const std::string& text, const std::string& key);
std::string read_file(const std::string& path);
// A JSON report written by myriad-load: throws std::runtime_error naming the file if it is
// missing, empty or not valid JSON (a crash before the report must never pass for a result).
nlohmann::json read_json(const std::string& path);
// The number under key, wherever it stands in the JSON text (the first found, depth first), or
// -1 when there is none. Throws when the text is not JSON.
double json_number(const std::string& json, const std::string& key);

}  // namespace test
