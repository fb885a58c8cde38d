// Offload, handlers on workers, cross-shard posts and timers, on every backend. Work that
// must wait waits at a test::Gate the test opens, never for a guessed time.
#include <myriad/myriad.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "client.hpp"
#include "gate.hpp"

namespace {

using namespace std::chrono_literals;
using myriad::CloseReason;
using test::BackendTest;

std::string upper(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return text;
}

// Uppercases each receive on the worker pool and sends the result from the owning shard. With
// a gate, each job waits at it before working.
class UpperOffload final : public myriad::Handler {
 public:
  explicit UpperOffload(test::Gate* gate = nullptr) : gate_(gate) {}
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    std::string text(data.view());
    myriad::Shard* origin = myriad::Shard::current();
    in_on_data = true;
    c.offload(
        [this, text = std::move(text)]() mutable {
          if (myriad::Shard::current() != nullptr) ran_on_shard = true;
          if (gate_ != nullptr) gate_->wait();
          return upper(std::move(text));
        },
        [this, origin](myriad::Connection conn, std::string result) {
          if (in_on_data) completed_inside_call = true;
          if (myriad::Shard::current() != origin || &conn.shard() != origin) wrong_shard = true;
          conn.send(result);
        });
    in_on_data = false;
  }
  std::atomic<bool> ran_on_shard{false};
  std::atomic<bool> wrong_shard{false};
  std::atomic<bool> completed_inside_call{false};

 private:
  static thread_local bool in_on_data;
  test::Gate* gate_;
};
thread_local bool UpperOffload::in_on_data = false;

class OffloadTest : public BackendTest {};

TEST_P(OffloadTest, ResultComesBackOnTheOwningShard) {
  UpperOffload handler;
  myriad::Config cfg = config();
  cfg.workers = 2;
  test::Server server(cfg, handler);
  std::vector<test::Socket> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(server.connect());
  for (int round = 0; round < 20; ++round) {
    for (auto& c : clients) ASSERT_TRUE(c.send_all("abc"));
    for (auto& c : clients) ASSERT_EQ(c.read_n(3), "ABC");
  }
  EXPECT_FALSE(handler.ran_on_shard) << "work ran on a shard thread, not on the pool";
  EXPECT_FALSE(handler.wrong_shard) << "a result was delivered on another shard";
  myriad::Counters c = server.counters();
  EXPECT_EQ(c.offloads_queued, 160u);
  EXPECT_EQ(c.offloads_done, 160u);
}

// One client pipelines far more work than the pool can hold (each receive is one job) while
// no job can finish: the jobs in the system stay bounded, and the server stops reading that
// connection (its receive window closes) instead of queueing every receive.
TEST_P(OffloadTest, AFullQueueStopsReadingInsteadOfQueueingWithoutBound) {
  test::Gate gate;
  UpperOffload handler(&gate);
  myriad::Config cfg = config();
  cfg.shards = 1;
  cfg.workers = 1;
  cfg.worker_queue = 2;
  cfg.max_connection_buffers = 4;
  test::Server server(cfg, handler);
  test::OpenOnExit open_on_exit(gate);
  test::Socket c = server.connect();
  c.set_nonblocking();
  std::string payload(8 << 20, 'q');  // 8 MiB: at least 512 receives of 16 KiB, each a job
  for (std::size_t i = 0; i < payload.size(); i += 4099) payload[i] = 'w';
  bool stalled = false;
  std::size_t sent = c.send_until_peer_stops_reading(payload, payload.size(), stalled);
  ASSERT_TRUE(stalled) << "the server kept reading (" << sent
                       << " bytes taken) while none of its jobs could run";
  // The window may close before the shard has read up to its bound: once a job waits, push
  // again until it closes again.
  ASSERT_TRUE(test::eventually([&] { return server.counters().offload_waits > 0; }))
      << "the queue never filled: the waiting path was not reached";
  sent += c.send_until_peer_stops_reading(payload.substr(sent), payload.size() - sent, stalled);
  ASSERT_TRUE(stalled);
  myriad::Counters held = server.counters();
  // In the system: the job the worker holds, worker_queue in the pool's queue, the one that
  // found the queue full and waits on the shard, and what the receive already on its way when
  // reading paused delivered (at most the connection's share of chunks).
  const uint64_t bound = 1 + cfg.worker_queue + 1 + cfg.max_connection_buffers;
  EXPECT_EQ(held.offloads_done, 0u);
  EXPECT_LE(held.offloads_queued, bound) << "jobs queued without bound";
  EXPECT_GT(held.offload_waits, 0u) << "the queue never filled: the waiting path was not reached";
  EXPECT_LE(held.bytes_in, bound * cfg.buffer_size) << "the server read past its jobs";
  EXPECT_LT(held.bytes_in, sent);
  // Let the work run: everything is answered, in order (one worker, jobs in FIFO order).
  gate.open();
  std::thread rest([&] {
    std::string tail = payload.substr(sent);
    test::Socket& s = c;
    std::size_t off = 0;
    while (off < tail.size()) {
      ssize_t n = ::send(s.fd(), tail.data() + off, tail.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else if (errno != EAGAIN && errno != EINTR) {
        return;
      } else {
        pollfd p{s.fd(), POLLOUT, 0};
        ::poll(&p, 1, 100);
      }
    }
  });
  std::string got = c.read_n(payload.size(), 60s);
  rest.join();
  EXPECT_EQ(got.size(), payload.size());
  std::string want = upper(payload);
  auto diff = std::mismatch(got.begin(), got.end(), want.begin(), want.end()).first - got.begin();
  EXPECT_TRUE(got == want) << "results were lost or reordered from byte " << diff;
  myriad::Counters end = server.counters();
  EXPECT_EQ(end.offloads_done, end.offloads_queued);
}

TEST_P(OffloadTest, WithoutWorkersOffloadRunsOnTheShardAfterTheCallReturns) {
  UpperOffload handler;
  myriad::Config cfg = config();
  cfg.workers = 0;
  test::Server server(cfg, handler);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("inline"));
  EXPECT_EQ(s.read_n(6), "INLINE");
  EXPECT_TRUE(handler.ran_on_shard) << "without a pool, the work runs on the shard";
  EXPECT_FALSE(handler.completed_inside_call)
      << "the completion ran inside the offload() call, not asynchronously";
  EXPECT_FALSE(handler.wrong_shard);
}

// What happened to one connection, in order, from any thread.
class Journal {
 public:
  void add(std::string event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  std::vector<std::string> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t size() {
    std::lock_guard lock(mutex_);
    return events_.size();
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> events_;
};

// Offloads two jobs per receive: "slow" waits at the gate, "fast" does not. With two workers
// the fast one finishes first, and its completion comes first.
TEST_P(OffloadTest, SeveralOffloadsOnOneConnectionCompleteInTheOrderTheirWorkFinishes) {
  test::Gate gate;
  Journal journal;
  class TwoJobs final : public myriad::Handler {
   public:
    TwoJobs(test::Gate& g, Journal& j) : gate(g), journal(j) {}
    void on_data(myriad::Connection c, myriad::Chunk) override {
      c.offload(
          [this] {
            gate.wait();
            return std::string("slow");
          },
          [this](myriad::Connection conn, std::string r) { done(conn, r); });
      c.offload([] { return std::string("fast"); },
                [this](myriad::Connection conn, std::string r) { done(conn, r); });
    }
    void done(myriad::Connection conn, const std::string& r) {
      journal.add(r + (conn.valid() ? "" : " (closed)"));
      conn.send(r);
    }
    test::Gate& gate;
    Journal& journal;
  } handler(gate, journal);
  myriad::Config cfg = config();
  cfg.workers = 2;
  test::Server server(cfg, handler);
  test::OpenOnExit open_on_exit(gate);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("go"));
  EXPECT_EQ(s.read_n(4), "fast") << "the fast job's completion waited for the slow one";
  EXPECT_EQ(journal.events(), std::vector<std::string>{"fast"});
  gate.open();
  EXPECT_EQ(s.read_n(4), "slow");
  EXPECT_EQ(journal.events(), (std::vector<std::string>{"fast", "slow"}));
  EXPECT_TRUE(test::eventually([&] { return server.counters().offloads_done == 2; }));
}

// Journals a connection's events; each receive offloads one job that waits at the gate.
class GatedJournal final : public myriad::Handler {
 public:
  GatedJournal(test::Gate& g, Journal& j, bool close_after_offload)
      : gate_(g), journal_(j), close_(close_after_offload) {}
  void on_data(myriad::Connection c, myriad::Chunk) override {
    journal_.add("data");
    c.set_user(this);  // only connections that sent something are journaled
    c.offload(
        [this] {
          gate_.wait();
          return 1;
        },
        [this](myriad::Connection conn, int) {
          bool sent = conn.send(std::string_view("result"));
          journal_.add(std::string("done") + (conn.valid() ? "" : " invalid") +
                       (sent ? " sent" : " not-sent"));
        });
    if (close_) c.close();
  }
  void on_close(myriad::Connection c, CloseReason reason, int) override {
    if (c.user() == nullptr) return;
    journal_.add(std::string("close ") + myriad::to_string(reason));
  }

 private:
  test::Gate& gate_;
  Journal& journal_;
  bool close_;
};

// Runs an empty task on every shard and waits for it: every loop turn in progress when this
// was called has finished (closes decided in it were acted on).
void let_every_shard_turn(test::Server& server) {
  std::atomic<unsigned> ran{0};
  for (unsigned i = 0; i < server.runtime().shard_count(); ++i) {
    server.runtime().shard(i).post([&] { ++ran; });
  }
  ASSERT_TRUE(test::eventually([&] { return ran == server.runtime().shard_count(); }));
}

TEST_P(OffloadTest, DrainWaitsForAnOffloadInFlight) {
  test::Gate gate;
  Journal journal;
  GatedJournal handler(gate, journal, false);
  myriad::Config cfg = config();
  cfg.shards = 1;  // an idle shard ends its drain at once and runs no more posts
  cfg.workers = 1;
  cfg.drain_timeout = 60s;
  test::Server server(cfg, handler);
  test::OpenOnExit open_on_exit(gate);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("x"));
  ASSERT_TRUE(test::eventually([&] { return gate.waiting() == 1; }));
  std::thread stopper([&] { server.stop(); });
  // The drain has begun once new connections are refused.
  ASSERT_TRUE(test::eventually([&] {
    try {
      test::Socket probe = server.connect();
      return false;
    } catch (const std::runtime_error&) {
      return true;
    }
  }));
  let_every_shard_turn(server);
  EXPECT_EQ(journal.events(), std::vector<std::string>{"data"})
      << "the connection was closed while its offload was in flight";
  gate.open();
  std::string got;
  EXPECT_TRUE(s.read_to_eof(got));
  EXPECT_EQ(got, "result") << "the drain did not wait for the offload's result";
  stopper.join();
  EXPECT_EQ(journal.events(), (std::vector<std::string>{"data", "done sent", "close shutdown"}));
  EXPECT_EQ(server.counters().offloads_done, 1u);
}

TEST_P(OffloadTest, ACloseDuringAnOffloadWaitsForItsCompletion) {
  test::Gate gate;
  Journal journal;
  GatedJournal handler(gate, journal, true);  // close() right after offloading
  myriad::Config cfg = config();
  cfg.workers = 1;
  test::Server server(cfg, handler);
  test::OpenOnExit open_on_exit(gate);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("x"));
  ASSERT_TRUE(test::eventually([&] { return gate.waiting() == 1; }));
  let_every_shard_turn(server);
  EXPECT_EQ(journal.events(), std::vector<std::string>{"data"})
      << "closed before the offload completed";
  gate.open();
  std::string got;
  EXPECT_TRUE(s.read_to_eof(got));
  // Once closing, a connection sends no more: the completion runs, its send is refused.
  EXPECT_EQ(got, "");
  ASSERT_TRUE(test::eventually([&] { return journal.size() == 3; }));
  EXPECT_EQ(journal.events(),
            (std::vector<std::string>{"data", "done not-sent", "close closed locally"}));
}

TEST_P(OffloadTest, APeerResetDuringAnOffloadStillRunsItsCompletionOnAClosedHandle) {
  test::Gate gate;
  Journal journal;
  GatedJournal handler(gate, journal, false);
  myriad::Config cfg = config();
  cfg.workers = 1;
  test::Server server(cfg, handler);
  test::OpenOnExit open_on_exit(gate);
  {
    test::Socket s = server.connect();
    ASSERT_TRUE(s.send_all("x"));
    ASSERT_TRUE(test::eventually([&] { return gate.waiting() == 1; }));
    s.reset_hard();
  }
  ASSERT_TRUE(test::eventually([&] { return journal.size() == 2; }));
  gate.open();
  ASSERT_TRUE(test::eventually([&] { return journal.size() == 3; }));
  EXPECT_EQ(journal.events(),
            (std::vector<std::string>{"data", "close reset", "done invalid not-sent"}));
  EXPECT_TRUE(test::eventually([&] {
    myriad::Counters c = server.counters();
    return c.offloads_done == 1 && c.open == 0 && c.buffers_in_use == 0;
  }));
}

// A handler that blocks (as a database call would), every call on the worker pool.
class BlockingEcho final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override {
    if (myriad::Shard::current() != nullptr) on_shard = true;
    enter(c, "open");
    leave(c);
  }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    if (myriad::Shard::current() != nullptr) on_shard = true;
    enter(c, "data");
    // Give another worker the chance to run an event of this connection at the same time.
    std::this_thread::yield();
    c.send(std::move(data));
    leave(c);
  }
  void on_close(myriad::Connection c, CloseReason, int) override {
    if (myriad::Shard::current() != nullptr) on_shard = true;
    enter(c, "close");
    leave(c);
  }
  // Per connection (keyed by shard, id and generation), what it saw, in order.
  std::map<std::tuple<unsigned, uint32_t, uint16_t>, std::string> history() {
    std::lock_guard lock(mutex_);
    return history_;
  }
  std::atomic<bool> on_shard{false};
  std::atomic<bool> overlapped{false};

 private:
  void enter(myriad::Connection c, const char* event) {
    std::lock_guard lock(mutex_);
    auto key = std::make_tuple(c.shard().index(), c.id(), c.generation());
    if (!running_.insert(key).second) overlapped = true;
    std::string& h = history_[key];
    // Consecutive data events count once: receives split as TCP likes.
    if (std::string(event) != "data" || h.size() < 4 || h.substr(h.size() - 4) != "data") {
      h += h.empty() ? event : std::string(" ") + event;
    }
  }
  void leave(myriad::Connection c) {
    std::lock_guard lock(mutex_);
    running_.erase(std::make_tuple(c.shard().index(), c.id(), c.generation()));
  }
  std::mutex mutex_;
  std::set<std::tuple<unsigned, uint32_t, uint16_t>> running_;
  std::map<std::tuple<unsigned, uint32_t, uint16_t>, std::string> history_;
};

TEST_P(OffloadTest, HandlersOnWorkersSeeOpenThenDataThenCloseOneAtATime) {
  BlockingEcho handler;
  myriad::Config cfg = config();
  cfg.workers = 4;
  cfg.handlers_on_workers = true;
  test::Server server(cfg, handler);
  {
    std::vector<test::EchoPeer> peers(8);
    for (std::size_t i = 0; i < peers.size(); ++i) {
      peers[i].socket = server.connect();
      peers[i].out = test::random_bytes(300000, 50 + i);
    }
    test::run_echo(peers);
  }
  ASSERT_TRUE(test::eventually([&] { return server.counters().open == 0; }));
  ASSERT_TRUE(test::eventually([&] {
    auto h = handler.history();
    return h.size() == 8 && std::all_of(h.begin(), h.end(), [](const auto& kv) {
             return kv.second.find("close") != std::string::npos;
           });
  }));
  for (const auto& [key, events] : handler.history())
    EXPECT_EQ(events, "open data close") << "connection " << std::get<1>(key);
  EXPECT_FALSE(handler.on_shard) << "a handler ran on a shard thread";
  EXPECT_FALSE(handler.overlapped) << "two events of one connection ran at once";
}

// BUG (not fixed here, see the report): with handlers on workers, a shutdown that reaches its
// drain_timeout while a handler call is still running calls on_close(kShutdown) from the
// shard's teardown, on the shard thread, at the same time as that call: on_close is no longer
// the last call and runs concurrently with on_data. A fix needs the teardown to wait for the
// connection's strand, or to hand on_close to it, in src/shard.cpp.
TEST_P(OffloadTest, DISABLED_HandlersOnWorkersNeverGetOnCloseWhileACallStillRuns) {
  test::Gate gate;
  class Blocks final : public myriad::Handler {
   public:
    explicit Blocks(test::Gate& g) : gate(g) {}
    void on_data(myriad::Connection, myriad::Chunk) override {
      ++running;
      gate.wait();
      --running;
    }
    void on_close(myriad::Connection, CloseReason, int) override {
      if (running > 0) overlapped = true;
    }
    test::Gate& gate;
    std::atomic<int> running{0};
    std::atomic<bool> overlapped{false};
  } handler(gate);
  myriad::Config cfg = config();
  cfg.workers = 2;
  cfg.handlers_on_workers = true;
  cfg.drain_timeout = 100ms;
  test::Server server(cfg, handler);
  test::OpenOnExit open_on_exit(gate);
  test::Socket s = server.connect();
  ASSERT_TRUE(s.send_all("x"));
  ASSERT_TRUE(test::eventually([&] { return gate.waiting() == 1; }));
  server.stop();  // past the drain deadline while on_data still waits at the gate
  gate.open();
  EXPECT_FALSE(handler.overlapped) << "on_close ran while on_data was still running";
}

TEST_P(OffloadTest, PostRunsOnTheTargetShardInOrder) {
  class Idle final : public myriad::Handler {
    void on_data(myriad::Connection, myriad::Chunk) override {}
  } idle;
  myriad::Config cfg = config();
  cfg.shards = 3;
  test::Server server(cfg, idle);
  std::mutex mutex;
  std::vector<std::pair<unsigned, int>> seen;
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) {
    for (unsigned s = 0; s < 3; ++s) {
      server.runtime().shard(s).post([&, s, i] {
        std::lock_guard lock(mutex);
        seen.emplace_back(myriad::Shard::current()->index() == s ? s : 99, i);
        ++done;
      });
    }
  }
  ASSERT_TRUE(test::eventually([&] { return done == 300; }));
  std::lock_guard lock(mutex);
  int last[3] = {-1, -1, -1};
  for (auto [shard, i] : seen) {
    ASSERT_LT(shard, 3u) << "a post ran on the wrong shard";
    EXPECT_GT(i, last[shard]) << "posts to one shard ran out of order";
    last[shard] = i;
  }
}

TEST_P(OffloadTest, TimersFireOnTheirShardAndCancelledOnesDoNot) {
  class Idle final : public myriad::Handler {
    void on_data(myriad::Connection, myriad::Chunk) override {}
  } idle;
  test::Server server(config(), idle);
  std::atomic<int> fired{0};
  std::atomic<bool> cancelled_fired{false};
  std::atomic<bool> wrong_thread{false};
  std::atomic<bool> sentinel{false};
  std::atomic<int> fired_at_sentinel{-1};
  myriad::Shard& shard = server.runtime().shard(1);
  // A timer that re-arms itself from its own callback, five times; its last one arms a
  // sentinel due after every other timer here, so when the sentinel fires every other
  // deadline has passed.
  struct Chain {
    myriad::Shard& shard;
    std::atomic<int>& fired;
    std::function<void()> sentinel;
    void step(int left) {
      if (left == 0) {
        ++fired;
        shard.after(60ms, sentinel);
        return;
      }
      shard.after(1ms, [this, left] { step(left - 1); });
    }
  } chain{shard, fired, [&] {
            fired_at_sentinel = fired.load();
            sentinel = true;
          }};
  shard.post([&] {
    for (int i = 0; i < 50; ++i) {
      shard.after(std::chrono::milliseconds(i), [&] {
        if (myriad::Shard::current() != &shard) wrong_thread = true;
        ++fired;
      });
    }
    myriad::TimerId doomed = shard.after(20ms, [&] { cancelled_fired = true; });
    EXPECT_TRUE(shard.cancel(doomed));
    EXPECT_FALSE(shard.cancel(doomed)) << "cancelling twice must say no the second time";
    chain.step(5);
  });
  ASSERT_TRUE(test::eventually([&] { return sentinel.load(); }));
  EXPECT_EQ(fired_at_sentinel.load(), 51);
  EXPECT_FALSE(cancelled_fired) << "a cancelled timer fired";
  EXPECT_FALSE(wrong_thread);
}

MYRIAD_CONFORMANCE_SUITE(OffloadTest);

}  // namespace
