// status_push: the founding job in small. Clients stay connected and subscribe to topics; every
// period each subscriber gets a status line per topic, and whatever anyone publishes to a topic
// reaches its subscribers on every shard at once.
//
// Client lines:   SUB <topic>   UNSUB <topic>   PUB <topic> <text>
// Server lines:   HELLO shard <i>   OK <command> <topic>   ERR <why>
//                 MSG <topic> <text>   STATUS <topic> last=<text> messages=<n>
//
// What it shows:
//  - per-shard state in the handler listen(factory) makes, with a periodic timer (Shard::every)
//    set up in its constructor, on the shard's own thread;
//  - one encoding per message and shard tick (SharedBuffer), sent to every subscriber without a
//    copy each: a subscriber costs its connection record, its subscription entries and, while a
//    line is queued to it, one reference;
//  - publishing across shards with Runtime::post_all;
//  - "latest value, not a backlog": a subscriber above its write watermark skips status lines
//    (it gets the next one) instead of queueing them.
#include <myriad/myriad.hpp>

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

using myriad::Connection;
using myriad::SharedBuffer;

// A connection's topics, so that closing it leaves them all.
struct Subscriptions {
  std::vector<std::string> topics;
};

class Hub final : public myriad::Handler {
 public:
  Hub(myriad::Shard& shard, myriad::Duration period) : shard_(shard) {
    shard.every(period, [this] { push_status(); });
  }

  void on_open(Connection c) override {
    c.emplace_state<Subscriptions>();
    c.send("HELLO shard " + std::to_string(shard_.index()) + "\n");
  }

  void on_data(Connection c, myriad::Chunk data) override {
    lines_.feed(c, data, [&](std::string_view line) { command(c, line); });
  }

  void on_close(Connection c, myriad::CloseReason, int) override {
    for (const std::string& name : c.state<Subscriptions>()->topics) leave(name, c);
  }

  // A message published anywhere, on this shard's thread. Topics nobody here subscribes to are
  // not stored, so what a shard keeps is bounded by its subscriptions.
  void publish(const std::string& name, const std::string& text, const SharedBuffer& line) {
    auto it = topics_.find(name);
    if (it == topics_.end()) return;
    it->second.last = text;
    ++it->second.messages;
    for (Connection subscriber : it->second.subscribers) subscriber.send(line);
  }

 private:
  struct Topic {
    std::unordered_set<Connection> subscribers;
    std::string last = "-";
    uint64_t messages = 0;
  };

  void command(Connection c, std::string_view line) {
    auto space = line.find(' ');
    std::string_view verb = line.substr(0, space);
    std::string_view rest = space == std::string_view::npos ? "" : line.substr(space + 1);
    std::string_view name = rest.substr(0, rest.find(' '));
    if (name.empty() || name.size() > 64) {
      c.send("ERR expected: SUB <topic> | UNSUB <topic> | PUB <topic> <text>\n");
      return;
    }
    std::string topic(name);
    if (verb == "SUB") {
      auto& subs = c.state<Subscriptions>()->topics;
      if (topics_[topic].subscribers.insert(c).second) subs.push_back(topic);
    } else if (verb == "UNSUB") {
      auto& subs = c.state<Subscriptions>()->topics;
      std::erase(subs, topic);
      leave(topic, c);
    } else if (verb == "PUB" && rest.size() > name.size() + 1) {
      std::string text(rest.substr(name.size() + 1));
      SharedBuffer line = SharedBuffer::copy("MSG " + topic + " " + text + "\n");
      shard_.runtime().post_all([topic, text, line](myriad::Shard& shard) {
        shard.handler<Hub>()->publish(topic, text, line);
      });
    } else {
      c.send("ERR expected: SUB <topic> | UNSUB <topic> | PUB <topic> <text>\n");
      return;
    }
    c.send("OK " + std::string(verb) + " " + topic + "\n");
  }

  void leave(const std::string& name, Connection c) {
    auto it = topics_.find(name);
    if (it == topics_.end()) return;
    it->second.subscribers.erase(c);
    if (it->second.subscribers.empty()) topics_.erase(it);
  }

  // The timer: one line per topic, encoded once and shared by its subscribers on this shard.
  void push_status() {
    for (const auto& [name, topic] : topics_) {
      SharedBuffer line = SharedBuffer::copy("STATUS " + name + " last=" + topic.last +
                                             " messages=" + std::to_string(topic.messages) + "\n");
      for (Connection subscriber : topic.subscribers) {
        if (subscriber.writable()) subscriber.send(line);  // a slow one gets the next line
      }
    }
  }

  myriad::Shard& shard_;
  myriad::DelimitedFramer lines_ = myriad::DelimitedFramer::lines(4096);
  std::unordered_map<std::string, Topic> topics_;
};

std::atomic<myriad::Runtime*> g_runtime{nullptr};
void stop_on_signal(int) {
  if (myriad::Runtime* runtime = g_runtime.load()) runtime->stop();  // async-signal-safe
}

}  // namespace

int main(int argc, char** argv) {
  // status_push [HOST:PORT] [PERIOD] [SHARDS]
  try {
    myriad::Address at = myriad::Address::parse(argc > 1 ? argv[1] : "127.0.0.1:7000");
    myriad::Duration period = myriad::parse_duration(argc > 2 ? argv[2] : "1s");
    myriad::Config config;
    config.shards = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 2;
    config.buffer_pool_bytes = 8 << 20;  // clients send little: a small receive pool does
    myriad::Runtime runtime(config);
    myriad::Address bound = runtime.listen(
        at, [period](myriad::Shard& shard) { return std::make_unique<Hub>(shard, period); });
    g_runtime = &runtime;
    ::signal(SIGINT, stop_on_signal);
    ::signal(SIGTERM, stop_on_signal);
    runtime.run([&] {
      std::printf("status_push: listening on %s (%s, %u shards, status every %s)\n",
                  bound.to_string().c_str(), runtime.backend().name.c_str(), runtime.shard_count(),
                  myriad::format_duration(period).c_str());
      std::fflush(stdout);
    });
    g_runtime = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "status_push: %s\n", e.what());
    return 1;
  }
  return 0;
}
