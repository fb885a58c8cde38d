// The io_uring backend's start-up probe: whether io_uring runs here at all (setup, the
// operations and registrations myriad needs), with which setup flags, and which optional
// features (registered ring fd, socket commands, bounded multishot receives) this kernel has.
// Runs once per process, before any shard starts; a failure names its cause and the fix.
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "backend.hpp"
#include "uring/uring_backend.hpp"

namespace myriad::detail {
namespace {

using uring::kOne;
using uring::prep_setsockopt;

int read_io_uring_disabled() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  int value = 0;
  if (in >> value) return value;
  return 0;
}

std::string setup_failure(int error) {
  std::string what = std::string("io_uring_setup failed: ") + std::strerror(error);
  if (error == EPERM) {
    int disabled = read_io_uring_disabled();
    if (disabled == 2) {
      return what +
             " (kernel.io_uring_disabled=2 turns io_uring off for everyone; fix: "
             "sysctl -w kernel.io_uring_disabled=0)";
    }
    if (disabled == 1) {
      return what +
             " (kernel.io_uring_disabled=1 allows only kernel.io_uring_group; fix: "
             "sysctl -w kernel.io_uring_disabled=0, or run in that group)";
    }
    return what +
           " (blocked by a seccomp filter, as Docker's default profile does; fix: run with "
           "a seccomp profile that allows io_uring_setup, io_uring_enter and "
           "io_uring_register)";
  }
  if (error == ENOSYS)
    return what + " (this kernel has no io_uring; myriad needs Linux 6.0 or later)";
  if (error == ENOMEM) return what + " (out of memory, or RLIMIT_MEMLOCK too low on an old kernel)";
  return what;
}

// Raises the soft RLIMIT_NOFILE to the hard one: each ring's direct-descriptor table is capped
// by it, and so is the epoll backend's capacity.
uint32_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  return static_cast<uint32_t>(std::min<rlim_t>(rl.rlim_cur, 1u << 20));
}

// Whether a multishot receive honours sqe->len (bytes per pass) and optlen (bytes in all):
// newer kernels end the receive once the total is reached; older ones reject len with EINVAL.
bool probe_receive_limits(io_uring& ring, void* br_memory) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
  auto* br = static_cast<io_uring_buf_ring*>(br_memory);
  static char buffers[8][64];
  io_uring_buf_ring_init(br);
  for (int i = 0; i < 8; ++i)
    io_uring_buf_ring_add(br, buffers[i], 64, static_cast<unsigned short>(i), 7, i);
  io_uring_buf_ring_advance(br, 8);
  char data[256] = {};
  ssize_t wrote = ::write(sv[1], data, sizeof(data));
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_recv_multishot(sqe, sv[0], nullptr, 64, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = 0;
  sqe->file_index = 128;
  sqe->user_data = 7;
  io_uring_submit_and_wait(&ring, 1);
  bool ended = false, rejected = false;
  int received = 0;
  for (int round = 0; round < 4 && !ended && !rejected; ++round) {
    io_uring_cqe* cqe;
    __kernel_timespec ts{0, 50'000'000};
    if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) != 0) break;
    if (cqe->user_data == 7) {
      if (cqe->res < 0) rejected = true;
      if (cqe->res > 0) received += cqe->res;
      if ((cqe->flags & IORING_CQE_F_MORE) == 0) ended = true;
    }
    io_uring_cqe_seen(&ring, cqe);
  }
  ::close(sv[0]);
  ::close(sv[1]);
  (void)wrote;
  // Supported: it stopped by itself after the total, with bytes still unread.
  return ended && !rejected && received > 0 && received < 256;
}

}  // namespace

uint32_t fd_limit() {
  return raise_fd_limit();
}

BackendChoice choose_backend(BackendKind wanted) {
  uint32_t limit = raise_fd_limit();
  BackendChoice choice;
  if (wanted == BackendKind::kEpoll) {
    choice.kind = BackendKind::kEpoll;
    choice.reason = "chosen by configuration";
    choice.features = "edge-triggered";
    return choice;
  }
  std::string failure;
  const unsigned candidates[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
          IORING_SETUP_SUBMIT_ALL,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL,
      IORING_SETUP_SUBMIT_ALL,
      0,
  };
  io_uring ring{};
  unsigned flags = 0;
  int rc = -EINVAL;
  io_uring_params p{};
  for (unsigned candidate : candidates) {
    p = io_uring_params{};
    p.flags = candidate | IORING_SETUP_CQSIZE;
    p.cq_entries = 64;
    rc = io_uring_queue_init_params(16, &ring, &p);
    if (rc == 0) {
      flags = candidate;
      break;
    }
    if (rc != -EINVAL) break;  // EINVAL: an older kernel, try fewer flags
  }
  if (rc != 0) {
    failure = setup_failure(-rc);
  } else {
    std::string missing;
    io_uring_probe* probe = io_uring_get_probe_ring(&ring);
    const std::pair<int, const char*> required[] = {
        {IORING_OP_ACCEPT, "accept"},       {IORING_OP_RECV, "recv"},
        {IORING_OP_SEND, "send"},           {IORING_OP_SENDMSG, "sendmsg"},
        {IORING_OP_ASYNC_CANCEL, "cancel"}, {IORING_OP_CLOSE, "close"},
        {IORING_OP_SOCKET, "socket"},       {IORING_OP_CONNECT, "connect"},
        {IORING_OP_SHUTDOWN, "shutdown"},   {IORING_OP_READ, "read"},
    };
    for (const auto& [op, name] : required) {
      if (probe == nullptr || !io_uring_opcode_supported(probe, op))
        missing += std::string(" ") + name;
    }
    if (probe != nullptr) io_uring_free_probe(probe);
    if (!missing.empty()) failure = "io_uring lacks required operations:" + missing;
    if (failure.empty() && (p.features & IORING_FEAT_EXT_ARG) == 0) {
      failure = "io_uring lacks IORING_FEAT_EXT_ARG (needs Linux 5.11+)";
    }
    if (failure.empty() && io_uring_register_files_sparse(&ring, 4) < 0) {
      failure = "io_uring cannot register a sparse direct-descriptor table (needs Linux 5.19+)";
    }
    void* br = nullptr;
    if (failure.empty()) {
      br = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      io_uring_buf_reg reg{};
      reg.ring_addr = reinterpret_cast<uint64_t>(br);
      reg.ring_entries = 8;
      reg.bgid = 0;
      if (br == MAP_FAILED || io_uring_register_buf_ring(&ring, &reg, 0) < 0) {
        failure = "io_uring has no provided buffer rings (needs Linux 6.0+)";
      }
    }
    if (failure.empty()) {
      choice.register_ring_fd = io_uring_register_ring_fd(&ring) >= 0;
      // Socket commands: create a socket in slot 0 and set TCP_NODELAY on it through the ring.
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_socket_direct(sqe, AF_INET, SOCK_STREAM, 0, 0, 0);
      sqe->user_data = 1;
      sqe->flags |= IOSQE_IO_LINK;
      sqe = io_uring_get_sqe(&ring);
      prep_setsockopt(sqe, 0, IPPROTO_TCP, TCP_NODELAY, &kOne, sizeof(kOne));
      sqe->user_data = 2;
      io_uring_submit_and_wait(&ring, 2);
      int results[3] = {-1, -1, -1};
      io_uring_cqe* cqe;
      while (io_uring_peek_cqe(&ring, &cqe) == 0) {
        if (cqe->user_data <= 2) results[cqe->user_data] = cqe->res;
        io_uring_cqe_seen(&ring, cqe);
      }
      choice.socket_commands = results[1] >= 0 && results[2] == 0;
      choice.receive_limits = probe_receive_limits(ring, br);
    }
    io_uring_queue_exit(&ring);
    if (br != nullptr && br != MAP_FAILED) ::munmap(br, 4096);
  }
  if (!failure.empty()) {
    if (wanted == BackendKind::kUring) throw std::runtime_error("--backend uring: " + failure);
    choice.kind = BackendKind::kEpoll;
    choice.reason = "io_uring unavailable: " + failure;
    choice.features = "edge-triggered";
    return choice;
  }
  choice.kind = BackendKind::kUring;
  choice.ring_flags = flags;
  choice.slots_per_ring = std::max<uint32_t>(limit, 64);
  choice.fd_limit = limit;
  choice.reason = wanted == BackendKind::kUring ? "chosen by configuration" : "available";
  std::string f;
  if ((flags & IORING_SETUP_DEFER_TASKRUN) != 0) {
    f = "SINGLE_ISSUER DEFER_TASKRUN";
  } else if ((flags & IORING_SETUP_COOP_TASKRUN) != 0) {
    f = "COOP_TASKRUN";
  } else {
    f = "plain task work";
  }
  f += ", multishot accept+recv, direct descriptors, provided buffer rings";
  if (choice.register_ring_fd) f += ", registered ring fd";
  f += choice.socket_commands ? ", socket commands"
                              : ", no socket commands (Nagle stays on outbound)";
  if (choice.receive_limits) f += ", bounded multishot receives";
  choice.features = f;
  return choice;
}

}  // namespace myriad::detail
