// Test support for the pub/sub suite: an in-process server whose connections subscribe by
// command, and subscriber clients that parse what they receive in each built-in encoding.
#pragma once

#include <myriad/myriad.hpp>
#include <myriad/pubsub.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "client.hpp"

namespace topic_test {

using namespace std::chrono_literals;

enum class Kind { kRaw, kFrame, kLine };
const char* kind_name(Kind k);

// Serves line commands, one per line:
//   SUB <topic> <raw|frame|line>   UNSUB <topic>   UNSUBALL   NAME <name>
//   PUB <topic> <length>\n<payload>      (publishes from the shard's thread)
// and forwards on_close and the drain edge to the PubSub.
class TopicHandler final : public myriad::Handler {
 public:
  void on_open(myriad::Connection c) override;
  void on_data(myriad::Connection c, myriad::Chunk data) override;
  void on_write_watermark(myriad::Connection c, bool above_high) override;
  void on_close(myriad::Connection c, myriad::CloseReason reason, int error) override;

  // The connection that sent NAME name (invalid handle if none).
  myriad::Connection named(const std::string& name);
  std::size_t open() const { return open_.load(); }
  std::size_t closed() const { return closed_.load(); }

  std::atomic<myriad::PubSub*> pubsub{nullptr};
  // Off: behave like an application that forgets to tell the PubSub about closes.
  std::atomic<bool> forward_close{true};
  myriad::EncodingId frame_enc = 0;
  myriad::EncodingId line_enc = 0;

 private:
  bool command(myriad::Connection c, std::string_view data, std::size_t& used);
  std::mutex mutex_;
  std::map<std::string, myriad::Connection> names_;
  std::atomic<std::size_t> open_{0};
  std::atomic<std::size_t> closed_{0};
};

// A Runtime with a TopicHandler and a PubSub, started in this order so no connection can come
// before the PubSub exists. Stops (and destroys the PubSub) in the destructor.
class TopicServer {
 public:
  TopicServer(myriad::Config config, myriad::PubSubConfig pubsub_config = {});
  ~TopicServer();
  myriad::Runtime& runtime() { return *runtime_; }
  myriad::PubSub& pubsub() { return *pubsub_; }
  TopicHandler& handler() { return handler_; }
  const myriad::Address& address() const { return address_; }
  // Runs fn on shard `index`'s thread and waits for it.
  void on_shard(unsigned index, const std::function<void()>& fn);
  // Runs fn on the named connection's shard and waits.
  void on_connection(const std::string& name, const std::function<void(myriad::Connection)>& fn);
  void stop();

 private:
  TopicHandler handler_;
  std::unique_ptr<myriad::Runtime> runtime_;
  std::unique_ptr<myriad::PubSub> pubsub_;
  myriad::Address address_;
};

struct Frame {
  int kind = 1;  // 1 message, 2 goodbye
  std::string topic;
  uint64_t offset = 0;
  std::string payload;
};

// A subscriber client: a socket and what it parsed. With kRaw the bytes stay unparsed in raw.
struct Subscriber {
  test::Socket socket;
  Kind kind = Kind::kLine;
  std::string buffer;
  std::string raw;
  std::vector<Frame> frames;
  bool eof = false;
  bool bad = false;  // bytes that do not parse
  // Parses what is in buffer; false on malformed input.
  bool parse();
  bool send(const std::string& s) { return socket.send_all(s); }
};

// Connects a subscriber. With move_fd_high the client's descriptor is moved far up before it
// connects, so that (epoll) the server's own descriptors stay dense for memory measurements.
Subscriber connect(const myriad::Address& to, Kind kind, int receive_buffer = 0,
                   bool move_fd_high = false);

// Reads from every subscriber (skipping null ones) until done() or the limit (a hang guard).
// Returns done().
bool pump(const std::vector<Subscriber*>& subs, const std::function<bool()>& done,
          std::chrono::milliseconds limit = 60s);
// Pumps until each of subs has at least n frames (or eof).
bool pump_frames(const std::vector<Subscriber*>& subs, std::size_t n,
                 std::chrono::milliseconds limit = 60s);

std::string sub_command(const std::string& topic, Kind kind);
// A payload that names its topic and offset-to-be and has binary bytes (newlines, zeros).
std::string payload_for(uint64_t seq, std::size_t size);

// Heap bytes in use now, over every thread (glibc mallinfo2).
std::size_t heap_in_use();

}  // namespace topic_test
