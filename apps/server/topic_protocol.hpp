// myriad-server --protocol topics: a minimal text protocol over myriad::PubSub (docs/PUBSUB.md).
//
//   client -> server            server -> client
//   SUB <topic>\n               OK SUB <topic>\n
//   UNSUB <topic>\n             OK UNSUB <topic>\n
//   PUB <topic> <length>\n<length bytes>        (no reply)
//   PING\n                      PONG\n
//                               MSG <topic> <offset> <length>\n<length bytes>\n
//                               ERR <reason>\n, then the server closes
//
// Uses only the public API. The handler keeps no state per connection (a partial command waits
// in the connection's spill buffer), so an idle subscriber costs its record and its
// subscriptions. Thread rule: one handler serves every shard; its counters are atomics.
#pragma once

#include <myriad/myriad.hpp>
#include <myriad/pubsub.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace server {

struct TopicOptions {
  myriad::PubSubConfig pubsub;
  std::size_t max_message = std::size_t{1} << 20;
  // True if arg is a topics option (its value taken with value()); throws std::invalid_argument.
  bool parse(std::string_view arg, const std::function<std::string_view()>& value);
  static const char* usage();
};

class TopicProtocol final : public myriad::Handler {
 public:
  static constexpr std::size_t kMaxLine = 512;

  explicit TopicProtocol(std::size_t max_message) : max_message_(max_message) {}
  // Before the runtime serves.
  void attach(myriad::PubSub& pubsub);

  void on_data(myriad::Connection c, myriad::Chunk data) override;
  void on_write_watermark(myriad::Connection c, bool above_high) override;
  void on_close(myriad::Connection c, myriad::CloseReason reason, int error) override;

  // Connections closed for a protocol error.
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }

 private:
  enum class Step { kDone, kNeedMore, kClosed };
  // Handles the command at the start of data; `used` says how many bytes it took.
  Step command(myriad::Connection c, std::string_view data, std::size_t& used);
  void fail(myriad::Connection c, std::string_view reason);

  myriad::PubSub* pubsub_ = nullptr;
  myriad::EncodingId line_ = 0;
  std::size_t max_message_;
  std::atomic<uint64_t> errors_{0};
};

}  // namespace server
