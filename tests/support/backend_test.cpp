#include "backend_test.hpp"

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>

namespace test {

namespace {

std::string io_uring_disabled_sysctl() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  std::string value;
  if (!(in >> value)) return "absent";
  return value;
}

// The running kernel's version is older than major.minor.
bool kernel_older_than(int major, int minor) {
  utsname u{};
  if (::uname(&u) != 0) return false;
  int have_major = 0, have_minor = 0;
  if (std::sscanf(u.release, "%d.%d", &have_major, &have_minor) != 2) return false;
  return have_major < major || (have_major == major && have_minor < minor);
}

UringProbe probe() {
  UringProbe result;
  // First the kernel itself, without the library: the library's own decision is what the
  // tests check, so it cannot be what decides whether they run.
  io_uring_params params{};
  long fd = ::syscall(SYS_io_uring_setup, 4, &params);
  if (fd < 0) {
    int error = errno;
    if (error == ENOSYS) {
      result.unavailable = "io_uring_setup: ENOSYS (this kernel has no io_uring)";
    } else if (error == EPERM) {
      result.unavailable =
          "io_uring_setup: EPERM (kernel.io_uring_disabled=" + io_uring_disabled_sysctl() +
          "; if 0, a seccomp filter denies it, as container runtimes do)";
    } else {
      result.broken = std::string(
                          "io_uring_setup failed with an error that does not mean "
                          "\"unavailable\": ") +
                      std::strerror(error);
    }
    return result;
  }
  ::close(static_cast<int>(fd));
  // The kernel has io_uring: the runtime must choose it, unless the kernel is older than the
  // features the backend needs (it says "needs Linux ..." then).
  try {
    myriad::Config c;
    c.backend = myriad::BackendKind::kAuto;
    c.shards = 1;
    c.buffer_pool_bytes = 1 << 20;
    myriad::Runtime runtime(c);
    myriad::BackendInfo info = runtime.backend();
    if (info.kind == myriad::BackendKind::kUring) return result;
    if (info.reason.find("needs Linux") != std::string::npos && kernel_older_than(6, 0)) {
      result.unavailable = info.reason;
    } else {
      result.broken =
          "io_uring_setup works on this machine, but the runtime chose epoll: " + info.reason;
    }
  } catch (const std::exception& e) {
    result.broken = std::string("probing the runtime with backend auto threw: ") + e.what();
  }
  return result;
}

}  // namespace

const UringProbe& uring_probe() {
  static std::once_flag once;
  static UringProbe result;
  std::call_once(once, [] { result = probe(); });
  return result;
}

void BackendTest::SetUp() {
  if (GetParam() != myriad::BackendKind::kUring) return;
  const UringProbe& p = uring_probe();
  if (!p.broken.empty()) FAIL() << p.broken;
  if (!p.unavailable.empty()) {
    GTEST_SKIP()
        << "io_uring is not available on this machine, so its half of the conformance suite "
           "does not run: "
        << p.unavailable;
  }
}

myriad::Config BackendTest::config() const {
  myriad::Config c;
  c.backend = GetParam();
  c.shards = 2;
  c.buffer_pool_bytes = 4 << 20;
  c.buffer_size = 16 << 10;
  c.max_connections = 10000;
  c.drain_timeout = 5s;
  return c;
}

std::string param_name(const ::testing::TestParamInfo<myriad::BackendKind>& info) {
  return info.param == myriad::BackendKind::kUring ? "uring" : "epoll";
}

}  // namespace test
