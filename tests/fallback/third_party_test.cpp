// myriad-server as other people's tools see it: socat (written by someone else entirely)
// pushes random files through the echo server and the output must equal the input.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;

TEST(ThirdParty, SocatClientsGetEveryByteBack) {
  // Not a skip: a missing tool must not pass for a tested server.
  ASSERT_EQ(::access("/usr/bin/socat", X_OK), 0)
      << "socat is not installed (scripts/deps.sh installs it)";
  test::ChildServer server({MYRIAD_SERVER_BIN, "--listen", "127.0.0.1:0", "--shards", "2"});
  const std::string& at = server.address();
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
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
