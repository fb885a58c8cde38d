// rpc_server: length-prefixed request/response, the work done on the worker pool.
//
// A frame is a 4-byte big-endian length and a payload. A request's payload is "<id> <n>"; the
// reply is "<id> <n> = <prime factors>" (e.g. "7 360 = 2 * 2 * 2 * 3 * 3 * 5"), or
// "<id> ERR <why>". Factoring by trial division takes up to a million steps: too long for a
// shard thread, which must never block its other connections, so it runs on the pool
// (Connection::offload) and the reply is sent back on the connection's own shard. Replies may
// come out of order when a client pipelines requests: the id tells them apart.
//
// What it shows: LengthPrefixedFramer (frames split across receives, oversize frames closing
// the connection), offload with its result coming back to the shard, and that a connection may
// be gone when the result arrives (valid()).
#include <myriad/myriad.hpp>

#include <signal.h>

#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using myriad::Connection;

// Up to 2^40: trial division then takes at most 2^20 steps.
constexpr uint64_t kLargest = uint64_t{1} << 40;

std::string factor(uint64_t n) {
  std::string out;
  auto add = [&out](uint64_t p) { out += (out.empty() ? "" : " * ") + std::to_string(p); };
  for (uint64_t p = 2; p * p <= n; p += p == 2 ? 1 : 2) {
    while (n % p == 0) {
      add(p);
      n /= p;
    }
  }
  if (n > 1) add(n);
  return out;
}

class Rpc final : public myriad::Handler {
 public:
  void on_data(Connection c, myriad::Chunk data) override {
    framer_.feed(c, data, [&](std::string_view request) { serve(c, request); });
  }

 private:
  void serve(Connection c, std::string_view request) {
    auto space = request.find(' ');
    std::string_view id = request.substr(0, space);
    uint64_t n = 0;
    std::string_view number = space == std::string_view::npos ? "" : request.substr(space + 1);
    auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), n);
    if (id.empty() || number.empty() || error != std::errc() ||
        end != number.data() + number.size()) {
      framer_.send(c, std::string(id) + " ERR expected: <id> <number>");
      return;
    }
    if (n < 2 || n > kLargest) {
      framer_.send(c, std::string(id) + " ERR out of range: 2 .. 2^40");
      return;
    }
    // The work runs on a worker; done runs back on this connection's shard, also when the
    // connection closed meanwhile.
    c.offload([n] { return factor(n); },
              [this, prefix = std::string(id) + " " + std::to_string(n) + " = "](
                  Connection c, std::string factors) {
                if (c.valid()) framer_.send(c, prefix + factors);
              });
  }

  const myriad::LengthPrefixedFramer framer_{4, 4096};
};

std::atomic<myriad::Runtime*> g_runtime{nullptr};
void stop_on_signal(int) {
  if (myriad::Runtime* runtime = g_runtime.load()) runtime->stop();  // async-signal-safe
}

}  // namespace

int main(int argc, char** argv) {
  // rpc_server [HOST:PORT] [WORKERS]
  try {
    myriad::Address at = myriad::Address::parse(argc > 1 ? argv[1] : "127.0.0.1:7001");
    myriad::Config config;
    config.shards = 1;
    config.workers = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 2;
    config.buffer_pool_bytes = 8 << 20;
    Rpc rpc;  // one handler for every shard (it keeps no mutable state); outlives the runtime
    myriad::Runtime runtime(config);
    myriad::Address bound = runtime.listen(at, rpc);
    g_runtime = &runtime;
    ::signal(SIGINT, stop_on_signal);
    ::signal(SIGTERM, stop_on_signal);
    runtime.run([&] {
      std::printf("rpc_server: listening on %s (%s, %u workers)\n", bound.to_string().c_str(),
                  runtime.backend().name.c_str(), runtime.config().workers);
      std::fflush(stdout);
    });
    g_runtime = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rpc_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
