// Test support: run the real binaries as child processes and read what they print.
#pragma once

#include <sys/types.h>

#include <chrono>
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

// "key=value key=value" -> value of key (as a number); -1 if absent.
long long field(const std::string& text, const std::string& key);
// A number from a flat JSON object written by myriad-load ("key": 123); -1 if absent.
double json_number(const std::string& json, const std::string& key);
std::string read_file(const std::string& path);

}  // namespace test
