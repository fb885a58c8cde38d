// What the kernel says about a process and about TCP memory, read from /proc.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace myriad::load {

struct ProcessSample {
  uint64_t rss_bytes = 0;
  uint64_t cpu_ns = 0;  // user + system time of every thread
};

// nullopt if the process is gone or unreadable.
std::optional<ProcessSample> sample_process(pid_t pid);

struct KernelSample {
  uint64_t tcp_inuse = 0;      // /proc/net/sockstat "TCP: inuse"
  uint64_t tcp_mem_bytes = 0;  // its "mem" (pages) in bytes: socket buffers
  uint64_t slab_bytes = 0;     // /proc/meminfo Slab
};
KernelSample sample_kernel();

}  // namespace myriad::load
