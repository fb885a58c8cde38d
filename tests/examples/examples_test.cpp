// Smoke tests of examples/: each program runs as its own process on an ephemeral loopback port,
// and these tests talk to it as its users would, then stop it with SIGTERM.
#include <myriad/address.hpp>

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <vector>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;

// Reads a socket line by line.
class Lines {
 public:
  explicit Lines(test::Socket socket) : socket_(std::move(socket)) {}
  test::Socket& socket() { return socket_; }
  bool send(const std::string& text) { return socket_.send_all(text); }
  // The next line without its "\n"; empty (and eof() or a timeout) if none came in time.
  std::string next(std::chrono::milliseconds limit = 10s) {
    auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto at = buffer_.find('\n');
      if (at != std::string::npos) {
        std::string line = buffer_.substr(0, at);
        buffer_.erase(0, at + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || eof_) return {};
      pollfd p{socket_.fd(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100))) <= 0) continue;
      char chunk[4096];
      ssize_t n = ::recv(socket_.fd(), chunk, sizeof(chunk), MSG_DONTWAIT);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        eof_ = true;
        continue;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  // The next line that starts with prefix (or contains needle), skipping the others (status
  // lines, notices); empty if none came in time.
  std::string next_starting(const std::string& prefix, std::chrono::milliseconds limit = 10s) {
    return next_where([&](const std::string& l) { return l.rfind(prefix, 0) == 0; }, limit);
  }
  std::string next_containing(const std::string& needle, std::chrono::milliseconds limit = 10s) {
    return next_where([&](const std::string& l) { return l.find(needle) != std::string::npos; },
                      limit);
  }
  template <class Pred>
  std::string next_where(Pred pred, std::chrono::milliseconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      std::string line = next(std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now()));
      if (pred(line)) return line;
      if (line.empty() && eof_) break;
    }
    return {};
  }
  bool eof() const { return eof_; }

 private:
  test::Socket socket_;
  std::string buffer_;
  bool eof_ = false;
};

// Starts an example and reads the address from its first line ("...: listening on ADDR ...").
struct Example {
  explicit Example(std::vector<std::string> argv) : process(std::move(argv)) {
    std::string line = process.read_line();
    auto at = line.find("listening on ");
    if (at == std::string::npos) {
      ADD_FAILURE() << "no 'listening on' line: '" << line << "' " << process.err();
      return;
    }
    std::string rest = line.substr(at + 13);
    address = myriad::Address::parse(rest.substr(0, rest.find(' ')));
  }
  Lines connect() const { return Lines(test::Socket::connect_to(address)); }
  // A graceful stop: the examples stop on SIGTERM and exit 0.
  void stop() {
    process.signal(SIGTERM);
    EXPECT_EQ(process.wait(30s), 0) << process.err();
  }
  test::Process process;
  myriad::Address address;
};

// The number after "shard " in a greeting line, or -1.
int shard_of(const std::string& line) {
  auto at = line.find("shard ");
  return at == std::string::npos ? -1 : std::atoi(line.c_str() + at + 6);
}

// Connects until it holds one client on each of shards 0 and 1 (SO_REUSEPORT decides), each
// with its greeting read. Bounded: 64 tries.
std::vector<Lines> one_per_shard(const Example& example, const std::string& greeting) {
  std::vector<Lines> chosen;
  chosen.emplace_back(test::Socket());
  chosen.emplace_back(test::Socket());
  bool have[2] = {false, false};
  std::vector<Lines> spare;
  for (int i = 0; i < 64 && !(have[0] && have[1]); ++i) {
    Lines c = example.connect();
    std::string hello = c.next_starting(greeting);
    int shard = shard_of(hello);
    if ((shard == 0 || shard == 1) && !have[shard]) {
      have[shard] = true;
      chosen[shard] = std::move(c);
    } else {
      spare.push_back(std::move(c));  // kept open: closing would send notices to the others
    }
  }
  EXPECT_TRUE(have[0] && have[1]) << "no client landed on one of the two shards";
  for (auto& s : spare) chosen.push_back(std::move(s));
  return chosen;
}

TEST(Examples, ChatRoomReachesEveryShardAndDropsAnOversizeLine) {
  Example chat({EXAMPLE_CHAT_ROOM, "127.0.0.1:0", "2"});
  std::vector<Lines> clients = one_per_shard(chat, "* welcome");
  ASSERT_GE(clients.size(), 2u);
  Lines& alice = clients[0];
  Lines& bob = clients[1];
  ASSERT_TRUE(alice.send("/nick alice\r\n"));  // CRLF works as well as LF
  std::string renamed = bob.next_containing(" is now alice");
  EXPECT_EQ(renamed.rfind("* guest-0-", 0), 0u) << renamed;
  ASSERT_TRUE(alice.send("hello from shard 0\n"));
  EXPECT_EQ(bob.next_starting("alice:"), "alice: hello from shard 0");
  EXPECT_EQ(alice.next_starting("alice:"), "alice: hello from shard 0");
  // Every shard counts its members; bob's shard sends the total.
  ASSERT_TRUE(bob.send("/who\n"));
  EXPECT_EQ(bob.next_containing("members online"),
            "* " + std::to_string(clients.size()) + " members online");
  // A line past the 1 KiB limit closes that connection only.
  ASSERT_TRUE(alice.send(std::string(5000, 'x')));
  EXPECT_TRUE(alice.socket().closed_by_peer());
  EXPECT_EQ(bob.next_starting("* alice left"), "* alice left");
  ASSERT_TRUE(bob.send("still here\n"));
  EXPECT_EQ(bob.next_containing(": still here").rfind("guest-1-", 0), 0u);
  chat.stop();
}

TEST(Examples, StatusPushPublishesAcrossShardsAndPushesStatus) {
  Example push({EXAMPLE_STATUS_PUSH, "127.0.0.1:0", "50ms", "2"});
  std::vector<Lines> clients = one_per_shard(push, "HELLO");
  ASSERT_GE(clients.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(clients[i].send("SUB news\n"));
    EXPECT_EQ(clients[i].next_starting("OK"), "OK SUB news");
  }
  // Status lines come by themselves, every period.
  EXPECT_EQ(clients[0].next_starting("STATUS news"), "STATUS news last=- messages=0");
  Lines publisher = push.connect();
  ASSERT_TRUE(publisher.send("PUB news the sky is clear\n"));
  EXPECT_EQ(publisher.next_starting("OK"), "OK PUB news");
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(clients[i].next_starting("MSG"), "MSG news the sky is clear") << "shard " << i;
    EXPECT_EQ(clients[i].next_starting("STATUS news last=the"),
              "STATUS news last=the sky is clear messages=1")
        << "shard " << i;
  }
  ASSERT_TRUE(publisher.send("NONSENSE\n"));
  EXPECT_EQ(publisher.next_starting("ERR").rfind("ERR expected", 0), 0u);
  ASSERT_TRUE(clients[0].send("UNSUB news\n"));
  EXPECT_EQ(clients[0].next_starting("OK"), "OK UNSUB news");
  push.stop();
}

// "<4-byte big-endian length><payload>"
std::string frame(const std::string& payload) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(payload.size() >> (8 * (3 - i)));
  return out + payload;
}

std::string read_frame(test::Socket& s) {
  std::string prefix = s.read_n(4, 10s);
  if (prefix.size() != 4) return "<no frame>";
  std::size_t n = 0;
  for (char ch : prefix) n = n << 8 | static_cast<unsigned char>(ch);
  return s.read_n(n, 10s);
}

TEST(Examples, RpcServerFactorsOnTheWorkersAndRejectsBadFrames) {
  Example rpc({EXAMPLE_RPC_SERVER, "127.0.0.1:0", "2"});
  test::Socket s = test::Socket::connect_to(rpc.address);
  ASSERT_TRUE(s.send_all(frame("1 360")));
  EXPECT_EQ(read_frame(s), "1 360 = 2 * 2 * 2 * 3 * 3 * 5");
  // Split across two writes, and a large prime (the slow path through the pool).
  std::string big = frame("2 1099511627689");
  ASSERT_TRUE(s.send_all(big.substr(0, 3)));
  ASSERT_TRUE(s.send_all(big.substr(3)));
  EXPECT_EQ(read_frame(s), "2 1099511627689 = 1099511627689");
  ASSERT_TRUE(s.send_all(frame("3 twelve") + frame("4 1")));
  EXPECT_EQ(read_frame(s), "3 ERR expected: <id> <number>");
  EXPECT_EQ(read_frame(s), "4 ERR out of range: 2 .. 2^40");
  // A frame over the 4 KiB limit closes the connection; others are unaffected.
  test::Socket other = test::Socket::connect_to(rpc.address);
  ASSERT_TRUE(s.send_all(std::string("\0\0\x20\0", 4)));
  EXPECT_TRUE(s.closed_by_peer());
  ASSERT_TRUE(other.send_all(frame("5 12")));
  EXPECT_EQ(read_frame(other), "5 12 = 2 * 2 * 3");
  rpc.stop();
}

TEST(Examples, RpcClientGetsEveryReplyRight) {
  Example rpc({EXAMPLE_RPC_SERVER, "127.0.0.1:0", "2"});
  test::Process client({EXAMPLE_RPC_CLIENT, rpc.address.to_string(), "8", "50", "60s"});
  EXPECT_EQ(client.wait(90s), 0) << client.err();
  EXPECT_NE(client.out().find("ok, 400 replies over 8 connections"), std::string::npos)
      << client.out();
  rpc.stop();
}

TEST(Examples, RpcClientFailsClearlyWithNoServer) {
  // A port that was just free: nothing listens there.
  myriad::Address nowhere;
  {
    Example rpc({EXAMPLE_RPC_SERVER, "127.0.0.1:0", "1"});
    nowhere = rpc.address;
    rpc.stop();
  }
  test::Process client({EXAMPLE_RPC_CLIENT, nowhere.to_string(), "2", "5", "20s"});
  EXPECT_EQ(client.wait(60s), 1);
  EXPECT_NE(client.err().find("connect failed"), std::string::npos) << client.err();
}

}  // namespace
