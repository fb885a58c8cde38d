// myriad-server as other people's tools see it: socat (written by someone else entirely)
// pushes random files through the echo server and the output must equal the input; and the
// epoll backend under a tiny descriptor limit must keep serving past EMFILE.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;

std::string listen_address(test::Process& server) {
  std::string line = server.read_line();
  std::size_t on = line.find(" on ");
  if (on == std::string::npos) return "";
  return line.substr(on + 4, line.find(' ', on + 4) - on - 4);
}

TEST(ThirdParty, SocatClientsGetEveryByteBack) {
  if (::access("/usr/bin/socat", X_OK) != 0)
    GTEST_SKIP() << "socat is not installed (scripts/deps.sh installs it)";
  test::Process server({MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards", "2"});
  std::string at = listen_address(server);
  ASSERT_FALSE(at.empty()) << server.err();
  char dir[] = "/tmp/myriad-socat-XXXXXX";
  std::string base = ::mkdtemp(dir);
  std::vector<std::unique_ptr<test::Process>> clients;
  constexpr int kClients = 16;
  for (int i = 0; i < kClients; ++i) {
    std::string in = base + "/in" + std::to_string(i), out = base + "/out" + std::to_string(i);
    std::ofstream(in, std::ios::binary) << test::random_bytes((1 << 20) + i * 4099, 1000 + i);
    // socat sends the file, half-closes at its end, and writes what comes back until the server
    // closes (which myriad does once it has echoed everything after the half-close).
    clients.push_back(std::make_unique<test::Process>(std::vector<std::string>{
        "/bin/sh", "-c",
        "exec /usr/bin/socat -t 30 -T 30 - TCP:" + at + " < " + in + " > " + out}));
  }
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(clients[i]->wait(60s), 0) << clients[i]->err();
    std::string in = test::read_file(base + "/in" + std::to_string(i));
    std::string out = test::read_file(base + "/out" + std::to_string(i));
    EXPECT_EQ(out.size(), in.size()) << "client " << i;
    EXPECT_TRUE(out == in) << "client " << i << ": echoed bytes differ";
  }
  std::system(("rm -rf " + base).c_str());
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(), 0);
}

TEST(ThirdParty, EpollPastTheDescriptorLimitClosesTheExcessAndKeepsServing) {
  // 64 descriptors in all: the server's own few, then room for a few dozen connections.
  test::Process server({"/usr/bin/prlimit", "--nofile=64", MYRIAD_SERVER_BIN, "--listen",
                        "127.0.0.1:0", "--shards", "1", "--backend", "epoll", "--stats", "200ms"});
  std::string at = listen_address(server);
  ASSERT_FALSE(at.empty()) << server.err();
  myriad::Address address = myriad::Address::parse(at);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 100; ++i) clients.push_back(test::Socket::connect_to(address));
  // Those past the limit are accepted and closed at once (EOF), not left hanging.
  int closed = 0, served = 0;
  for (auto& c : clients) {
    if (!c.send_all("ping")) {
      ++closed;
      continue;
    }
    std::string got = c.read_n(4, 5s);
    if (got == "ping")
      ++served;
    else
      ++closed;
  }
  EXPECT_GT(served, 20);
  EXPECT_GT(closed, 20);
  EXPECT_EQ(served + closed, 100);
  clients.clear();
  // Once the clients leave, the server takes new ones as before.
  std::this_thread::sleep_for(300ms);
  test::Socket again = test::Socket::connect_to(address);
  ASSERT_TRUE(again.send_all("again"));
  EXPECT_EQ(again.read_n(5), "again");
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(), 0) << server.err();
  std::size_t stats = server.out().rfind("stopped: ");
  ASSERT_NE(stats, std::string::npos);
  EXPECT_GT(test::field(server.out().substr(stats), "accept_errors"), 0);
}

TEST(ServerProcess, OneShardIsOneThreadAndStopsGracefullyOnSigint) {
  // Runtime::run() keeps shard 0 on the main thread: one shard and no workers, one thread.
  test::Process server({MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards", "1", "--backend",
                        "epoll", "--stats", "100ms"});
  std::string at = listen_address(server);
  ASSERT_FALSE(at.empty()) << server.err();
  std::size_t threads = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(server.pid()) + "/task")) {
    (void)entry;
    ++threads;
  }
  EXPECT_EQ(threads, 1u);
  test::Socket client = test::Socket::connect_to(myriad::Address::parse(at));
  ASSERT_TRUE(client.send_all("ping"));
  EXPECT_EQ(client.read_n(4), "ping");
  std::this_thread::sleep_for(300ms);  // a few stats lines from shard 0's timer
  server.signal(SIGINT);
  EXPECT_TRUE(client.closed_by_peer()) << "the open connection must be closed by the shutdown";
  EXPECT_EQ(server.wait(), 0) << server.err();
  const std::string& out = server.out();
  EXPECT_NE(out.find("myriad-server: stats accepted=1"), std::string::npos) << out;
  EXPECT_NE(out.find("Interrupt, draining"), std::string::npos) << out;
  std::size_t stopped = out.rfind("stopped: ");
  ASSERT_NE(stopped, std::string::npos) << out;
  EXPECT_EQ(test::field(out.substr(stopped), "closed_shutdown"), 1);
}

}  // namespace
