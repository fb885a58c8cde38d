// io_uring blocked the way a container blocks it: a seccomp filter that answers io_uring_setup
// with EPERM. Under `auto` the server must fall back to epoll, say why, and serve; under a
// forced `uring` it must refuse to start with a message naming the cause and the fix.
#include <gtest/gtest.h>

#include <signal.h>

#include <cerrno>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;

myriad::Address address_from(const std::string& startup_line) {
  // "myriad-server: echo on 127.0.0.1:PORT | ..."
  std::size_t on = startup_line.find(" on ");
  std::size_t end = startup_line.find(' ', on + 4);
  return myriad::Address::parse(startup_line.substr(on + 4, end - on - 4));
}

TEST(SeccompFallback, AutoFallsBackToEpollAndServes) {
  test::Process server({SECCOMP_EXEC_BIN, MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards",
                        "2", "--backend", "auto"});
  std::string line = server.read_line();
  ASSERT_NE(line.find("echo on 127.0.0.1:"), std::string::npos) << line << server.err();
  EXPECT_NE(line.find("| epoll ("), std::string::npos) << "did not fall back to epoll: " << line;
  std::string why = server.read_line();
  EXPECT_NE(why.find("io_uring unavailable"), std::string::npos) << why;
  EXPECT_NE(why.find("seccomp"), std::string::npos)
      << "the reason should name the seccomp filter: " << why;

  std::vector<test::EchoPeer> peers(20);
  for (std::size_t i = 0; i < peers.size(); ++i) {
    peers[i].socket = test::Socket::connect_to(address_from(line));
    peers[i].out = test::random_bytes(100000 + i, i);
  }
  test::run_echo(peers);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(), 0) << server.err();
  EXPECT_NE(server.out().find("stopped:"), std::string::npos);
}

TEST(SeccompFallback, ForcedUringRefusesToStartWithTheCauseAndTheFix) {
  test::Process server(
      {SECCOMP_EXEC_BIN, MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--backend", "uring"});
  int code = server.wait(30s);
  EXPECT_NE(code, 0);
  EXPECT_NE(server.err().find("io_uring_setup failed"), std::string::npos) << server.err();
  EXPECT_NE(server.err().find("seccomp"), std::string::npos) << server.err();
  EXPECT_NE(server.err().find("fix:"), std::string::npos) << "no fix given: " << server.err();
}

TEST(SeccompFallback, LoadGeneratorFallsBackToo) {
  test::Process server({MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards", "1"});
  std::string line = server.read_line();
  ASSERT_FALSE(line.empty()) << server.err();
  myriad::Address at = address_from(line);
  test::Process load({SECCOMP_EXEC_BIN, MYRIAD_LOAD_BIN, "echo", "--target", at.to_string(),
                      "--connections", "20", "--duration", "500ms", "--warmup", "100ms",
                      "--quiet"});
  EXPECT_EQ(load.wait(), 0) << load.out() << load.err();
  EXPECT_NE(load.out().find(": epoll"), std::string::npos) << load.out();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(), 0);
}

// The conformance suite itself under the same filter: its io_uring half is skipped, saying
// why, and its epoll half runs and passes.
TEST(SeccompFallback, TheConformanceSuiteSkipsItsIoUringHalfLoudly) {
  test::Process suite({SECCOMP_EXEC_BIN, CONFORMANCE_TESTS_BIN,
                       "--gtest_filter=Backends/EchoTest.CountersAgreeWithWhatClientsSent/*"});
  EXPECT_EQ(suite.wait(120s), 0) << suite.out() << suite.err();
  EXPECT_NE(
      suite.out().find("[  SKIPPED ] Backends/EchoTest.CountersAgreeWithWhatClientsSent/uring"),
      std::string::npos)
      << suite.out();
  EXPECT_NE(suite.out().find("io_uring_setup: EPERM"), std::string::npos) << suite.out();
  EXPECT_NE(
      suite.out().find("[       OK ] Backends/EchoTest.CountersAgreeWithWhatClientsSent/epoll"),
      std::string::npos)
      << suite.out();
}

// An io_uring that fails for a reason that does not mean "unavailable" (here ENOMEM from
// io_uring_setup) must fail the io_uring half, not skip it.
TEST(SeccompFallback, TheConformanceSuiteFailsOnAnyOtherIoUringFailure) {
  test::Process suite({SECCOMP_EXEC_BIN, "--errno", std::to_string(ENOMEM), CONFORMANCE_TESTS_BIN,
                       "--gtest_filter=Backends/EchoTest.CountersAgreeWithWhatClientsSent/*"});
  EXPECT_NE(suite.wait(120s), 0) << suite.out() << suite.err();
  EXPECT_NE(
      suite.out().find("[  FAILED  ] Backends/EchoTest.CountersAgreeWithWhatClientsSent/uring"),
      std::string::npos)
      << suite.out();
  EXPECT_EQ(suite.out().find("[  SKIPPED ]"), std::string::npos) << suite.out();
  EXPECT_NE(suite.out().find("does not mean"), std::string::npos) << suite.out();
}

}  // namespace
