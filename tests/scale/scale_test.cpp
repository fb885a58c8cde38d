// The CI-sized scale check: one server process holds 50,000 connections (2.5 times the
// RLIMIT_NOFILE of 20,000 on these machines), every one verified alive, and its user-space
// memory per idle connection stays within the 64-byte budget. Memory is asserted, time never.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>

#include "backend_test.hpp"
#include "process.hpp"

namespace {

TEST(Scale, OneServerHoldsFiftyThousandVerifiedConnectionsInSixtyFourBytesEach) {
  // Past the descriptor limit in one process needs io_uring's direct descriptors.
  const test::UringProbe& probe = test::uring_probe();
  ASSERT_EQ(probe.broken, "");
  if (!probe.unavailable.empty())
    GTEST_SKIP() << "io_uring is not available on this machine: " << probe.unavailable;
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  test::Process server(
      {MYRIAD_SERVER_BIN, "--listen", "0.0.0.0:0", "--shards", "1", "--max-connections", "60000"});
  std::string line = server.read_line();
  std::size_t colon = line.find("0.0.0.0:");
  ASSERT_NE(colon, std::string::npos) << line << server.err();
  std::string port = line.substr(colon + 8, line.find(' ', colon) - colon - 8);
  ASSERT_NE(line.find("io_uring"), std::string::npos)
      << "io_uring is needed to pass the descriptor limit in one process: " << line;

  char dir[] = "/tmp/myriad-scale-XXXXXX";
  std::string json_path = std::string(::mkdtemp(dir)) + "/scale.json";
  test::Process load({MYRIAD_LOAD_BIN, "hold", "--target", "127.0.0.1-127.0.0.4:" + port,
                      "--connections", "50000", "--connect-rate", "40000", "--duration", "1s",
                      "--server-pid", std::to_string(server.pid()), "--json", json_path,
                      "--quiet"});
  EXPECT_EQ(load.wait(std::chrono::minutes(4)), 0) << load.out() << load.err();
  nlohmann::json json = test::read_json(json_path);
  std::system(("rm -rf " + std::string(dir)).c_str());
  EXPECT_EQ(json.at("established").get<double>(), 50000) << json.dump();
  EXPECT_EQ(json.at("verified").get<double>(), 50000) << json.dump();
  EXPECT_GT(50000u, rl.rlim_cur) << "the test must exceed the descriptor limit to mean anything";
  double per = json.at("server_rss_bytes_per_connection").get<double>();
  EXPECT_GT(per, 0) << json.dump();
  EXPECT_LE(per, 64.0) << "server user-space memory per idle connection over budget: "
                       << json.dump();

  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(), 0) << server.err();
  EXPECT_EQ(test::field(server.out().substr(server.out().find("stopped:")), "accepted"), 50000);
}

}  // namespace
