#include "proc_stats.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace myriad::load {

std::optional<ProcessSample> sample_process(pid_t pid) {
  ProcessSample s;
  std::string base = "/proc/" + std::to_string(pid);
  std::ifstream status(base + "/status");
  if (!status) return std::nullopt;
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_bytes = std::stoull(line.substr(6)) * 1024;
  }
  // utime and stime are fields 14 and 15, after the parenthesised command name.
  std::ifstream stat(base + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  long hz = ::sysconf(_SC_CLK_TCK);
  s.cpu_ns = (utime + stime) * (1'000'000'000ULL / static_cast<uint64_t>(hz > 0 ? hz : 100));
  return s;
}

KernelSample sample_kernel() {
  KernelSample k;
  std::ifstream sockstat("/proc/net/sockstat");
  std::string word;
  while (sockstat >> word) {
    if (word != "TCP:") continue;
    std::string key;
    uint64_t value;
    while (sockstat >> key >> value) {
      if (key == "inuse") k.tcp_inuse = value;
      if (key == "mem") {
        k.tcp_mem_bytes = value * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        break;
      }
    }
    break;
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    if (line.rfind("Slab:", 0) == 0) k.slab_bytes = std::stoull(line.substr(5)) * 1024;
  }
  return k;
}

}  // namespace myriad::load
