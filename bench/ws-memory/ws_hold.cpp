// ws-hold: opens N WebSocket connections (the full opening handshake, Sec-WebSocket-Accept
// checked), holds them idle, then checks that every one still answers a ping. The load side of
// bench/ws-memory, which measures what an idle WebSocket costs the server beside an idle raw
// connection. Built on myriad's public API (direct descriptors, so past RLIMIT_NOFILE).
//
//   ws-hold --target 127.0.0.1-127.0.0.8:7000 --connections 100000 --hold 5s
//
// Prints "ws-hold: opened=N handshaken=N verified=N" and exits 0 only when every connection
// completed its handshake and answered. Bounded: --timeout caps every phase.
#include <myriad/myriad.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::chrono_literals;

// RFC 6455 4.1's example key and the accept value it must get (4.2.2).
constexpr std::string_view kRequestTail =
    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
constexpr std::string_view kAccept = "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
// A masked ping with a 4-byte payload "held" (key 0), and the pong the server must send back.
const std::string kPing = std::string("\x89\x84\x00\x00\x00\x00", 6) + "held";
const std::string kPong = std::string("\x8a\x04", 2) + "held";

enum State : uintptr_t { kConnecting = 0, kHandshaking = 1, kOpen = 2, kVerified = 3 };

struct Totals {
  std::atomic<uint64_t> opened{0}, handshaken{0}, verified{0}, failed{0};
};

class Hold final : public myriad::Handler {
 public:
  Hold(Totals& totals, std::string request) : totals_(totals), request_(std::move(request)) {}

  void on_open(myriad::Connection c) override {
    totals_.opened.fetch_add(1, std::memory_order_relaxed);
    c.set_user(reinterpret_cast<void*>(kHandshaking));
    c.send(request_);
    connections_.push_back(c);
  }

  void on_data(myriad::Connection c, myriad::Chunk data) override {
    auto state = reinterpret_cast<uintptr_t>(c.user());
    // The response head, or a pong, may come in pieces: gather in the spill buffer.
    std::span<const std::byte> bytes = data.bytes();
    if (!c.spill().empty()) {
      c.spill_append(bytes);
      bytes = c.spill();
    }
    std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (state == kHandshaking) {
      auto end = text.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (c.spill().empty()) c.spill_append(bytes);
        return;
      }
      std::string_view head = text.substr(0, end);
      if (head.substr(0, 12) != "HTTP/1.1 101" || head.find(kAccept) == std::string_view::npos) {
        fail(c);
        return;
      }
      if (end + 4 != text.size()) {
        fail(c);  // nothing may follow the head while we are silent
        return;
      }
      if (!c.spill().empty()) c.spill_consume(c.spill().size());
      c.set_user(reinterpret_cast<void*>(kOpen));
      totals_.handshaken.fetch_add(1, std::memory_order_relaxed);
    } else if (state == kOpen) {
      if (text.size() < kPong.size()) {
        if (c.spill().empty()) c.spill_append(bytes);
        return;
      }
      if (text != kPong) {
        fail(c);
        return;
      }
      if (!c.spill().empty()) c.spill_consume(c.spill().size());
      c.set_user(reinterpret_cast<void*>(kVerified));
      totals_.verified.fetch_add(1, std::memory_order_relaxed);
    } else {
      fail(c);
    }
  }

  void on_close(myriad::Connection c, myriad::CloseReason reason, int error) override {
    if (!stopping_.load(std::memory_order_relaxed) ||
        reason == myriad::CloseReason::kConnectFailed) {
      if (totals_.failed.fetch_add(1) < 5) {
        std::fprintf(stderr, "ws-hold: a connection ended early: %s (%s)\n",
                     myriad::to_string(reason), std::strerror(error));
      }
    }
    (void)c;
  }

  // On this handler's shard: ping every open connection.
  void ping_all() {
    for (myriad::Connection c : connections_) {
      if (reinterpret_cast<uintptr_t>(c.user()) == kOpen) c.send(kPing);
    }
  }
  void close_all() {
    stopping_.store(true);
    for (myriad::Connection c : connections_) c.abort();
    connections_.clear();
  }

 private:
  void fail(myriad::Connection c) {
    totals_.failed.fetch_add(1, std::memory_order_relaxed);
    c.abort();
  }

  Totals& totals_;
  std::string request_;
  std::vector<myriad::Connection> connections_;
  std::atomic<bool> stopping_{false};
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "ws-hold: %s\nusage: ws-hold --target A.B.C.D[-A.B.C.E]:PORT --connections N "
               "[--hold DUR] [--timeout DUR] [--connect-window N]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string target;
  std::size_t count = 1000;
  std::size_t window = 2000;
  myriad::Duration hold = 5s, timeout = 120s;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage("missing value");
      return argv[++i];
    };
    if (arg == "--target")
      target = value();
    else if (arg == "--connections")
      count = std::stoull(value());
    else if (arg == "--hold")
      hold = myriad::parse_duration(value());
    else if (arg == "--timeout")
      timeout = myriad::parse_duration(value());
    else if (arg == "--connect-window")
      window = std::stoull(value());
    else
      usage("unknown option");
  }
  // "127.0.0.1-127.0.0.8:7000": a range of addresses on one port.
  auto colon = target.rfind(':');
  if (colon == std::string::npos) usage("--target needs a port");
  std::string hosts = target.substr(0, colon), port = target.substr(colon + 1);
  std::string first = hosts, last = hosts;
  if (auto dash = hosts.find('-'); dash != std::string::npos) {
    first = hosts.substr(0, dash);
    last = hosts.substr(dash + 1);
  }
  auto last_octet = [](const std::string& a) { return std::stoi(a.substr(a.rfind('.') + 1)); };
  std::string prefix = first.substr(0, first.rfind('.') + 1);
  std::vector<myriad::Address> targets;
  for (int o = last_octet(first); o <= last_octet(last); ++o) {
    targets.push_back(myriad::Address::parse(prefix + std::to_string(o) + ":" + port));
  }

  myriad::Config config;
  config.shards = 1;
  config.buffer_pool_bytes = 16 << 20;
  config.buffer_size = 4096;
  config.max_connections = count + 16;
  myriad::Runtime runtime(config);
  Totals totals;
  Hold handler(totals, "GET /ws HTTP/1.1\r\nHost: " + first + kRequestTail.data());
  int rc = 1;
  // Everything the timers use lives here, for the whole run (the start-up callback returns).
  myriad::Shard* shard = nullptr;
  std::chrono::steady_clock::time_point deadline;
  std::size_t issued = 0;
  std::function<void()> step, verify;
  auto finish = [&](int code) {
    rc = code;
    std::printf("ws-hold: opened=%llu handshaken=%llu verified=%llu failed=%llu\n",
                static_cast<unsigned long long>(totals.opened.load()),
                static_cast<unsigned long long>(totals.handshaken.load()),
                static_cast<unsigned long long>(totals.verified.load()),
                static_cast<unsigned long long>(totals.failed.load()));
    std::fflush(stdout);
    handler.close_all();
    shard->after(200ms, [&] { runtime.stop(); });
  };
  verify = [&] {
    if (totals.verified.load() == count || totals.failed.load() > 0) {
      finish(totals.failed.load() == 0 ? 0 : 1);
    } else if (std::chrono::steady_clock::now() > deadline + hold) {
      std::fprintf(stderr, "ws-hold: not every connection answered its ping\n");
      finish(1);
    } else {
      shard->after(5ms, verify);
    }
  };
  // Keep at most `window` handshakes in flight; look at progress every few milliseconds.
  step = [&] {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "ws-hold: timed out while opening\n");
      finish(1);
      return;
    }
    std::size_t pending = issued - totals.handshaken.load() - totals.failed.load();
    while (issued < count && pending < window) {
      shard->connect(targets[issued % targets.size()], handler);
      ++issued;
      ++pending;
    }
    if (totals.failed.load() > 0) {
      finish(1);
      return;
    }
    if (totals.handshaken.load() < count) {
      shard->after(2ms, step);
      return;
    }
    std::printf("ws-hold: holding %zu WebSocket connections for %s\n", count,
                myriad::format_duration(hold).c_str());
    std::fflush(stdout);
    shard->after(hold, [&] {
      handler.ping_all();
      verify();
    });
  };
  runtime.run([&] {
    shard = myriad::Shard::current();
    deadline = std::chrono::steady_clock::now() + timeout;
    step();
  });
  return rc;
}
