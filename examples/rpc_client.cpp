// rpc_client: an outbound client for rpc_server. It opens CONNECTIONS connections, pipelines
// REQUESTS requests on each, checks every reply (the factors multiply back to the number), and
// exits 0 once all are answered; 1 on a wrong reply, a connection that fails or closes early,
// or the deadline.
//
// What it shows: myriad on the client side (Shard::connect, on_open / on_close with
// kConnectFailed), connections spread over every shard with Runtime::post_all, typed
// per-connection state for the calls in flight, a deadline timer, and stopping the runtime
// from inside it.
#include <myriad/myriad.hpp>

#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

using myriad::Connection;

// The number request `id` asks about: spread over [2, 2^40).
uint64_t number_for(uint64_t id) {
  return ((id + 1) * 0x9E3779B97F4A7C15ULL >> 24) | 2;
}

// Whether "n = f1 * f2 * ..." holds, every factor above 1.
bool factors_multiply_to(std::string_view factors, uint64_t n) {
  uint64_t product = 1;
  while (!factors.empty()) {
    uint64_t f = 0;
    auto [end, error] = std::from_chars(factors.data(), factors.data() + factors.size(), f);
    if (error != std::errc() || f < 2 || product > n / f) return false;
    product *= f;
    factors.remove_prefix(static_cast<std::size_t>(end - factors.data()));
    if (factors.starts_with(" * "))
      factors.remove_prefix(3);
    else if (!factors.empty())
      return false;
  }
  return product == n;
}

// The calls one connection has in flight: id -> number.
struct Calls {
  std::unordered_map<uint64_t, uint64_t> pending;
};

// One handler for the client's connections on every shard: what it counts is atomic. Its
// callbacks all run on shard threads, so Shard::current() reaches the runtime.
class Client final : public myriad::Handler {
 public:
  Client(int connections, int requests) : connections_(connections), requests_(requests) {}

  void on_open(Connection c) override {
    Calls* calls = c.emplace_state<Calls>();
    for (int i = 0; i < requests_; ++i) {
      uint64_t id = next_id_++;
      calls->pending.emplace(id, number_for(id));
      framer_.send(c, std::to_string(id) + " " + std::to_string(number_for(id)));
    }
  }

  void on_data(Connection c, myriad::Chunk data) override {
    framer_.feed(c, data, [&](std::string_view reply) { return check(c, reply); });
  }

  void on_close(Connection c, myriad::CloseReason reason, int error) override {
    if (reason == myriad::CloseReason::kConnectFailed) {
      fail(std::string("connect failed: ") + std::strerror(error));
    } else if (Calls* calls = c.state<Calls>(); calls != nullptr && !calls->pending.empty()) {
      fail("connection closed (" + std::string(myriad::to_string(reason)) + ") with " +
           std::to_string(calls->pending.size()) + " replies missing");
    }
  }

  void fail(const std::string& why) {
    if (!failed_.exchange(true)) std::fprintf(stderr, "rpc_client: %s\n", why.c_str());
    myriad::Shard::current()->runtime().stop();
  }
  bool failed() const { return failed_; }
  uint64_t answered() const { return answered_; }

 private:
  bool check(Connection c, std::string_view reply) {
    Calls& calls = *c.state<Calls>();
    uint64_t id = 0;
    auto [end, error] = std::from_chars(reply.data(), reply.data() + reply.size(), id);
    auto it = calls.pending.find(id);
    std::string_view rest(end, static_cast<std::size_t>(reply.data() + reply.size() - end));
    std::string expect = " " + std::to_string(it == calls.pending.end() ? 0 : it->second) + " = ";
    if (error != std::errc() || it == calls.pending.end() || !rest.starts_with(expect) ||
        !factors_multiply_to(rest.substr(expect.size()), it->second)) {
      fail("wrong reply: " + std::string(reply));
      return false;
    }
    calls.pending.erase(it);
    ++answered_;
    if (calls.pending.empty()) {
      c.close();
      if (++finished_ == connections_) c.shard().runtime().stop();  // everything answered
    }
    return true;
  }

  const int connections_;
  const int requests_;
  const myriad::LengthPrefixedFramer framer_{4, 4096};
  std::atomic<uint64_t> next_id_{0};
  std::atomic<uint64_t> answered_{0};
  std::atomic<int> finished_{0};
  std::atomic<bool> failed_{false};
};

}  // namespace

int main(int argc, char** argv) {
  // rpc_client HOST:PORT [CONNECTIONS] [REQUESTS] [DEADLINE]
  if (argc < 2) {
    std::fprintf(stderr, "usage: rpc_client HOST:PORT [CONNECTIONS] [REQUESTS] [DEADLINE]\n");
    return 2;
  }
  try {
    myriad::Address to = myriad::Address::parse(argv[1]);
    int connections = argc > 2 ? std::atoi(argv[2]) : 10;
    int requests = argc > 3 ? std::atoi(argv[3]) : 100;
    myriad::Duration deadline = myriad::parse_duration(argc > 4 ? argv[4] : "30s");
    myriad::Config config;
    config.shards = 2;
    config.buffer_pool_bytes = 8 << 20;
    Client client(connections, requests);  // outlives the runtime that calls it
    myriad::Runtime runtime(config);
    runtime.run([&] {
      // Shard i opens connections i, i + shards, ...: each on its own thread.
      runtime.post_all([&](myriad::Shard& shard) {
        for (int i = static_cast<int>(shard.index()); i < connections;
             i += static_cast<int>(runtime.shard_count())) {
          shard.connect(to, client);
        }
      });
      myriad::Shard::current()->after(deadline, [&] { client.fail("deadline passed"); });
    });
    if (client.failed()) return 1;
    std::printf("rpc_client: ok, %llu replies over %d connections\n",
                static_cast<unsigned long long>(client.answered()), connections);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rpc_client: %s\n", e.what());
    return 1;
  }
  return 0;
}
