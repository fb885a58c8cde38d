// myriad-server as a process: its threads, its start-up line, its stats, and a graceful stop on
// a signal.
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;

TEST(ServerProcess, OneShardIsOneThreadAndStopsGracefullyOnSigint) {
  // Runtime::run() keeps shard 0 on the main thread: one shard and no workers, one thread.
  test::ChildServer server({MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards", "1",
                            "--backend", "epoll", "--stats", "50ms"});
  EXPECT_NE(server.startup_line().find("| epoll ("), std::string::npos) << server.startup_line();
  std::size_t threads = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(server.pid()) + "/task")) {
    (void)entry;
    ++threads;
  }
  EXPECT_EQ(threads, 1u);
  test::Socket client = test::Socket::connect_to(myriad::Address::parse(server.address()));
  ASSERT_TRUE(client.send_all("ping"));
  EXPECT_EQ(client.read_n(4), "ping");
  // Shard 0's timer prints the stats: wait until they show this connection.
  EXPECT_NE(server.wait_for_stats([](const std::string& line) {
    return test::field(line, "accepted") == 1 && test::field(line, "bytes_out") == 4;
  }),
            "")
      << server.process().out();
  server.process().signal(SIGINT);
  EXPECT_TRUE(client.closed_by_peer()) << "the open connection must be closed by the shutdown";
  EXPECT_EQ(server.process().wait(), 0) << server.process().err();
  const std::string& out = server.process().out();
  EXPECT_NE(out.find("Interrupt, draining"), std::string::npos) << out;
  ASSERT_NE(server.stopped(), "") << out;
  EXPECT_EQ(test::field(server.stopped(), "closed_shutdown"), 1);
}

}  // namespace
