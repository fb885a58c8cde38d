// myriad-server under a tiny RLIMIT_NOFILE, on both backends. Past the limit every new
// connection is either served or closed by the server, never left hanging in the backlog;
// the ones closed are counted; the server keeps serving, and serves new clients once others
// leave. epoll meets EMFILE with a reserve descriptor. io_uring's connections are direct
// descriptors that do not count against the limit, but each ring does: once no ring can be
// added, the kernel closes what the full rings cannot hold (ENFILE).
#include <gtest/gtest.h>

#include <signal.h>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;
using Outcome = test::Socket::Outcome;

struct Tally {
  int served = 0;
  int closed = 0;
  int hanging = 0;
};

// Sends a ping on each and sorts them by what came back.
Tally ping_all(std::vector<test::Socket>& clients) {
  Tally t;
  for (auto& c : clients) {
    std::string got;
    Outcome outcome = Outcome::kClosed;
    if (c.send_all("ping")) outcome = c.read_outcome(4, got, 10s);
    if (outcome == Outcome::kData && got == "ping") {
      ++t.served;
    } else if (outcome == Outcome::kHanging) {
      ++t.hanging;
    } else {
      ++t.closed;
    }
  }
  return t;
}

TEST(DescriptorLimit, EpollClosesWhatItCannotHoldAndKeepsServing) {
  // 64 descriptors in all: the server's own few, then room for a few dozen connections.
  test::ChildServer server({"/usr/bin/prlimit", "--nofile=64", MYRIAD_SERVER_BIN, "--listen",
                            "127.0.0.1:0", "--shards", "1", "--backend", "epoll", "--stats",
                            "50ms"});
  myriad::Address address = myriad::Address::parse(server.address());
  std::vector<test::Socket> clients;
  for (int i = 0; i < 100; ++i) clients.push_back(test::Socket::connect_to(address));
  Tally t = ping_all(clients);
  EXPECT_EQ(t.hanging, 0) << "connections past the limit were left in the backlog";
  EXPECT_GT(t.served, 20);
  EXPECT_GT(t.closed, 20);
  EXPECT_EQ(t.served + t.closed + t.hanging, 100);
  // Every connection closed for want of a descriptor was counted.
  std::string stats = server.wait_for_stats([&](const std::string& line) {
    return test::field(line, "accepted") == t.served &&
           test::field(line, "accept_errors") >= t.closed;
  });
  EXPECT_NE(stats, "") << server.process().out();
  clients.clear();
  // Once the clients leave, the server takes new ones as before.
  ASSERT_NE(server.wait_for_stats([](const std::string& s) { return test::field(s, "open") == 0; }),
            "");
  std::vector<test::Socket> again;
  again.push_back(test::Socket::connect_to(address));
  Tally after = ping_all(again);
  EXPECT_EQ(after.served, 1);
  EXPECT_EQ(server.stop(), 0) << server.process().err();
}

TEST(DescriptorLimit, UringServesPastTheLimitThenClosesWhatNoRingCanHold) {
  // 64 descriptors (a ring's table cannot be larger, so rings of 64 slots, 48 usable:
  // accepting keeps a quarter free): a few for the process, then one per ring, so about 56
  // rings before io_uring_setup fails with EMFILE.
  test::ChildServer server({"/usr/bin/prlimit", "--nofile=64", MYRIAD_SERVER_BIN, "--listen",
                            "127.0.0.1:0", "--shards", "1", "--backend", "uring", "--stats",
                            "10ms"});
  ASSERT_NE(server.startup_line().find("| io_uring ("), std::string::npos) << server.startup_line();
  myriad::Address address = myriad::Address::parse(server.address());
  constexpr int kClients = 3200;
  std::vector<test::Socket> clients;
  // In batches the server has taken (accepted or closed) before the next: a burst faster than
  // the shard moves its accept to the next ring loses connections for another reason.
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(test::Socket::connect_to(address));
    if (clients.size() % 16 == 0 || i + 1 == kClients) {
      long long want = static_cast<long long>(clients.size());
      ASSERT_NE(server.wait_for_stats([&](const std::string& s) {
        return test::field(s, "accepted") + test::field(s, "accept_errors") >= want;
      }),
                "")
          << "the server stopped taking connections at " << want << "\n"
          << server.process().out() << server.process().err();
    }
  }
  Tally t = ping_all(clients);
  EXPECT_EQ(t.hanging, 0) << "connections past the limit were left in the backlog";
  EXPECT_GT(t.served, 64) << "direct descriptors must go past RLIMIT_NOFILE";
  EXPECT_GT(t.closed, 0) << "the test never reached the point where no ring could be added";
  EXPECT_EQ(t.served + t.closed, kClients);
  std::string stats = server.wait_for_stats([&](const std::string& line) {
    return test::field(line, "accepted") == t.served &&
           test::field(line, "accept_errors") >= t.closed;
  });
  EXPECT_NE(stats, "") << "closed connections went uncounted";
  // The server is still up and serves again once clients leave.
  clients.resize(100);  // the first ones, all served
  ASSERT_NE(
      server.wait_for_stats([&](const std::string& s) { return test::field(s, "open") <= 100; }),
      "");
  std::vector<test::Socket> again;
  for (int i = 0; i < 16; ++i) again.push_back(test::Socket::connect_to(address));
  Tally after = ping_all(again);
  EXPECT_EQ(after.served, 16);
  EXPECT_EQ(server.stop(), 0) << server.process().err();
}

}  // namespace
