// The smallest program against an installed myriad: an echo server and a client of it in one
// process. Exits 0 once the client got its bytes back, 1 otherwise.
#include <myriad/myriad.hpp>

#include <chrono>
#include <cstdio>
#include <string>

namespace {

class Echo final : public myriad::Handler {
 public:
  void on_data(myriad::Connection c, myriad::Chunk data) override { c.send(std::move(data)); }
};

class Ping final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override { c.send(myriad::SharedBuffer::copy("ping")); }
  void on_data(myriad::Connection c, myriad::Chunk data) override {
    got.append(data.view());
    if (got.size() >= 4) c.shard().runtime().stop();
  }
  void on_close(myriad::Connection c, myriad::CloseReason reason, int) override {
    if (reason == myriad::CloseReason::kConnectFailed) c.shard().runtime().stop();
  }
  std::string got;
};

}  // namespace

int main() {
  Echo echo;
  Ping ping;
  myriad::Config config;
  config.shards = 1;
  config.buffer_pool_bytes = 1 << 20;
  myriad::Runtime runtime(config);
  myriad::Address at = runtime.listen(myriad::Address::parse("127.0.0.1:0"), echo);
  runtime.run([&] {
    myriad::Shard::current()->connect(at, ping);
    myriad::Shard::current()->after(std::chrono::seconds(20), [&] { runtime.stop(); });
  });
  std::printf("consumer: %s on %s\n", ping.got == "ping" ? "ok" : "FAILED",
              runtime.backend().name.c_str());
  return ping.got == "ping" ? 0 : 1;
}
