#include "process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace test {

Process::Process(std::vector<std::string> argv) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
}

Process::~Process() {
  if (status_ < 0 && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

void Process::pump(int timeout_ms) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};  // poll ignores a closed (-1) one
  if (out_fd_ < 0 && err_fd_ < 0) return;
  if (::poll(fds, 2, timeout_ms) <= 0) return;
  char buf[65536];
  for (int i = 0; i < 2; ++i) {
    if ((fds[i].revents & (POLLIN | POLLHUP)) == 0) continue;
    ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
    if (n > 0) (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(n));
    if (n == 0) {
      ::close(fds[i].fd);
      (i == 0 ? out_fd_ : err_fd_) = -1;
    }
  }
}

std::string Process::read_line(std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::size_t nl = out_.find('\n', line_pos_);
    if (nl != std::string::npos) {
      std::string line = out_.substr(line_pos_, nl - line_pos_);
      line_pos_ = nl + 1;
      return line;
    }
    // No line can come once stdout is closed.
    if (std::chrono::steady_clock::now() > end || out_fd_ < 0) return "";
    pump(50);
  }
}

void Process::skip_printed_lines() {
  pump(0);
  std::size_t last = out_.rfind('\n');
  if (last != std::string::npos && last + 1 > line_pos_) line_pos_ = last + 1;
}

bool Process::wait_for_err(const std::string& needle, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (err_.find(needle) == std::string::npos) {
    if (std::chrono::steady_clock::now() > end || err_fd_ < 0) return false;
    pump(50);
  }
  return true;
}

void Process::signal(int sig) {
  if (status_ < 0 && pid_ > 0) ::kill(pid_, sig);
}

int Process::wait(std::chrono::milliseconds limit) {
  if (status_ >= 0) return status_;
  auto end = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    pump(20);
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
  }
  while (out_fd_ >= 0 || err_fd_ >= 0) pump(50);
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return status_;
}

long long field(const std::string& text, const std::string& key) {
  std::size_t at = text.find(" " + key + "=");
  if (at == std::string::npos) at = text.find(key + "=") == 0 ? 0 : std::string::npos;
  if (at == std::string::npos) return -1;
  at = text.find('=', at) + 1;
  return std::stoll(text.substr(at));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
const nlohmann::json* find_key(const nlohmann::json& j, const std::string& key) {
  if (j.is_object()) {
    auto it = j.find(key);
    if (it != j.end()) return &*it;
  }
  if (j.is_structured()) {
    for (const auto& item : j) {
      if (const nlohmann::json* found = find_key(item, key)) return found;
    }
  }
  return nullptr;
}
}  // namespace

double json_number(const std::string& json, const std::string& key) {
  nlohmann::json parsed = nlohmann::json::parse(json, nullptr, false);
  if (parsed.is_discarded()) throw std::runtime_error("not JSON: " + json.substr(0, 200));
  const nlohmann::json* found = find_key(parsed, key);
  if (found == nullptr || !found->is_number()) return -1;
  return found->get<double>();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("report " + path + " was not written");
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) throw std::runtime_error("report " + path + " is empty");
  nlohmann::json json = nlohmann::json::parse(ss.str(), nullptr, false);
  if (json.is_discarded() || !json.is_object())
    throw std::runtime_error("report " + path + " is not a JSON object: " + ss.str());
  return json;
}

std::string startup_address(const std::string& line) {
  std::size_t on = line.find(" on ");
  if (line.rfind("myriad-server: ", 0) != 0 || on == std::string::npos) return "";
  std::size_t end = line.find(' ', on + 4);
  return line.substr(on + 4, end == std::string::npos ? std::string::npos : end - on - 4);
}

ChildServer::ChildServer(std::vector<std::string> argv)
    : process_(std::make_unique<Process>(std::move(argv))) {
  startup_line_ = process_->read_line();
  address_ = startup_address(startup_line_);
  if (address_.empty()) {
    process_->wait(std::chrono::seconds(10));
    throw std::runtime_error("the server did not start: '" + startup_line_ + "' " +
                             process_->out() + process_->err());
  }
}

std::string ChildServer::wait_for_stats(const std::function<bool(const std::string&)>& accept,
                                        std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  process_->skip_printed_lines();
  while (std::chrono::steady_clock::now() < end) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    std::string line = process_->read_line(std::max(left, std::chrono::milliseconds(1)));
    if (line.rfind("myriad-server: stats ", 0) == 0 && accept(line)) return line;
  }
  return "";
}

int ChildServer::stop(int sig) {
  process_->signal(sig);
  return process_->wait();
}

std::string ChildServer::stopped() const {
  std::size_t at = process_->out().rfind("stopped: ");
  if (at == std::string::npos) return "";
  return process_->out().substr(at, process_->out().find('\n', at) - at);
}

}  // namespace test
