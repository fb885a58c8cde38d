// The subscribe mode's wire protocols: how a subscriber subscribes and reads deliveries, and how
// the publisher publishes, for each server the fan-out benchmark drives:
//   myriad  myriad-server --protocol topics   SUB / PUB, deliveries "MSG t offset len\n...\n"
//   redis   redis-server pub/sub (RESP)       SUBSCRIBE / PUBLISH
//   nats    nats-server                       CONNECT, SUB / PUB, PING/PONG
//   nchan   nginx + nchan                     WebSocket subscribers on /sub/TOPIC, HTTP POST to
//                                             /pub/TOPIC
//   push    myriad-push's plain TCP protocol  SUB [offset epoch] / PUB, "MSG t offset len\n...\n";
//                                             subscribers can resume from their last offset
// And the payload every message carries, so that a subscriber can check it without asking
// anyone: its sequence number and when it was due, in hex, then letters that depend on both
// (printable, so that text protocols carry it as it is).
//
// The parsers are pure functions of (bytes, a state byte): a connection keeps only the bytes of
// an incomplete unit between receives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace myriad::load {

constexpr uint32_t kFanoutMinSize = 32;

// Writes a size-byte payload (size >= kFanoutMinSize).
void make_payload(uint64_t seq, uint64_t due_ns, char* out, std::size_t size);
// Reads one back; false when it is not exactly what make_payload wrote for some seq and time.
bool check_payload(std::string_view payload, std::size_t size, uint64_t& seq, uint64_t& due_ns);

// What a parser found.
class FanoutEvents {
 public:
  virtual ~FanoutEvents() = default;
  virtual void subscribed() = 0;                       // the server confirmed the subscription
  virtual void message(std::string_view payload) = 0;  // a delivery
  virtual void reply(std::string_view bytes) = 0;      // to send back (a PONG)
  // Protocols with offsets (push): the server's epoch when subscribed, and the offset of the
  // delivery that follows (called just before message()).
  virtual void epoch(std::string_view) {}
  virtual void position(uint64_t) {}
};

class FanoutProtocol {
 public:
  static constexpr std::size_t kBad = SIZE_MAX;
  virtual ~FanoutProtocol() = default;
  virtual const char* name() const = 0;
  // Bytes a new subscriber sends.
  virtual std::string subscribe_request(std::string_view topic) const = 0;
  // Whether a subscriber can come back and resume after its last offset (resume_request).
  virtual bool resumes() const { return false; }
  virtual std::string resume_request(std::string_view topic, uint64_t, std::string_view) const {
    return subscribe_request(topic);
  }
  // Bytes the publisher sends once connected.
  virtual std::string publisher_hello() const { return {}; }
  // Appends one publish to out.
  virtual void publish_request(std::string& out, std::string_view topic,
                               std::string_view payload) const = 0;
  // Consume whole units from the front of data and report them; return the bytes consumed (the
  // rest is an incomplete unit), or kBad when the stream breaks the protocol or the server
  // refused something. state starts at 0 for each connection.
  virtual std::size_t parse_subscriber(std::string_view data, uint8_t& state,
                                       FanoutEvents& events) const = 0;
  virtual std::size_t parse_publisher(std::string_view data, uint8_t& state,
                                      FanoutEvents& events) const = 0;
};

// "myriad", "redis", "nats", "nchan" or "push"; throws std::invalid_argument otherwise.
std::unique_ptr<FanoutProtocol> make_fanout_protocol(std::string_view name);

}  // namespace myriad::load
