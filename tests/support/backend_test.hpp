// Test support: the conformance suite's base. Every conformance test is parameterised by
// backend and runs against io_uring and epoll (MYRIAD_CONFORMANCE_SUITE). The io_uring half
// is skipped, loudly, only where io_uring is genuinely unavailable; any other failure to run
// it fails the test.
#pragma once

#include <myriad/myriad.hpp>

#include <gtest/gtest.h>

#include <string>

#include "server.hpp"

namespace test {

// Whether io_uring can run here, probed once (thread-safe).
struct UringProbe {
  // The documented causes of "unavailable", and nothing else: io_uring_setup refused with
  // ENOSYS (no io_uring in this kernel) or EPERM (kernel.io_uring_disabled, or a seccomp
  // filter as container runtimes install), or a kernel older than the backend needs, as the
  // runtime reports it. Empty when io_uring is available.
  std::string unavailable;
  // Anything else that went wrong while probing: the io_uring tests fail with it.
  std::string broken;
};
const UringProbe& uring_probe();

class BackendTest : public ::testing::TestWithParam<myriad::BackendKind> {
 protected:
  void SetUp() override;
  // A config for this backend with small, test-friendly defaults.
  myriad::Config config() const;
};

std::string param_name(const ::testing::TestParamInfo<myriad::BackendKind>& info);

}  // namespace test

#define MYRIAD_CONFORMANCE_SUITE(Suite)                                            \
  INSTANTIATE_TEST_SUITE_P(                                                        \
      Backends, Suite,                                                             \
      ::testing::Values(myriad::BackendKind::kUring, myriad::BackendKind::kEpoll), \
      ::test::param_name)
