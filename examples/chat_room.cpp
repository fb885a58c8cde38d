// chat_room: a line-based chat room over plain TCP (try it with `nc 127.0.0.1 7000`).
//
// Every line a member sends reaches every member, whichever shard holds them. What it shows:
//  - one handler per shard (listen(factory)) holding that shard's members: no locks anywhere;
//  - typed per-connection state (emplace_state) and Connections as hash-set keys;
//  - lines split across receives (DelimitedFramer::lines), bad input closing one connection;
//  - a message encoded once (SharedBuffer) and handed to every shard (Runtime::post_all);
//  - a question answered by every shard (/who) with the reply sent from another thread.
//
// Commands: /nick NAME, /who, /quit; anything else is said to the room.
#include <myriad/myriad.hpp>

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace {

using myriad::Connection;

struct Member {
  std::string name;
};

// One per shard, made on that shard's thread; only that thread touches it.
class Room final : public myriad::Handler {
 public:
  explicit Room(myriad::Shard& shard) : shard_(shard) {}

  void on_open(Connection c) override {
    Member* me = c.emplace_state<Member>(
        Member{"guest-" + std::to_string(shard_.index()) + "-" + std::to_string(c.id())});
    members_.insert(c);
    c.send("* welcome, " + me->name + " (shard " + std::to_string(shard_.index()) +
           "). /nick NAME, /who, /quit\n");
    say("* " + me->name + " joined\n");
  }

  void on_data(Connection c, myriad::Chunk data) override {
    // A line longer than 1 KiB closes this connection (kInputOverflow); the others go on.
    lines_.feed(c, data, [&](std::string_view line) { return command(c, line); });
  }

  void on_close(Connection c, myriad::CloseReason reason, int) override {
    members_.erase(c);
    // The state lives until on_close returns. At shutdown everyone leaves: nobody to tell.
    if (reason != myriad::CloseReason::kShutdown) say("* " + c.state<Member>()->name + " left\n");
  }

  // Sends text, encoded once, to every member here. Called on this shard's thread.
  void deliver(const myriad::SharedBuffer& text) {
    for (Connection member : members_) member.send(text);
  }
  std::size_t size() const { return members_.size(); }

 private:
  // Returns false to stop reading this connection's lines.
  bool command(Connection c, std::string_view line) {
    Member& me = *c.state<Member>();
    if (line == "/quit") {
      c.close();
      return false;
    }
    if (line.starts_with("/nick ") && line.size() > 6) {
      std::string old = std::exchange(me.name, std::string(line.substr(6)));
      say("* " + old + " is now " + me.name + "\n");
    } else if (line == "/who") {
      who(c);
    } else if (!line.empty()) {
      say(me.name + ": " + std::string(line) + "\n");
    }
    return true;
  }

  // To every member on every shard: one buffer, shared by all of them.
  void say(const std::string& text) {
    myriad::SharedBuffer message = myriad::SharedBuffer::copy(text);
    shard_.runtime().post_all(
        [message](myriad::Shard& shard) { shard.handler<Room>()->deliver(message); });
  }

  // Every shard counts its members; the last one to answer sends the total. Connection::send
  // may be called from any thread: it is posted to the asker's shard.
  void who(Connection asker) {
    struct Tally {
      std::atomic<unsigned> shards_left;
      std::atomic<std::size_t> members{0};
    };
    auto tally = std::make_shared<Tally>();
    tally->shards_left = shard_.runtime().shard_count();
    shard_.runtime().post_all([tally, asker](myriad::Shard& shard) mutable {
      tally->members += shard.handler<Room>()->size();
      if (--tally->shards_left == 0) {
        asker.send("* " + std::to_string(tally->members.load()) + " members online\n");
      }
    });
  }

  myriad::Shard& shard_;
  myriad::DelimitedFramer lines_ = myriad::DelimitedFramer::lines(1024);
  std::unordered_set<Connection> members_;
};

std::atomic<myriad::Runtime*> g_runtime{nullptr};
void stop_on_signal(int) {
  if (myriad::Runtime* runtime = g_runtime.load()) runtime->stop();  // async-signal-safe
}

}  // namespace

int main(int argc, char** argv) {
  // chat_room [HOST:PORT] [SHARDS]
  myriad::Address at = myriad::Address::parse(argc > 1 ? argv[1] : "127.0.0.1:7000");
  myriad::Config config;
  config.shards = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 2;
  config.buffer_pool_bytes = 8 << 20;  // a chat room needs little receive memory
  config.idle_timeout = std::chrono::minutes(10);
  try {
    myriad::Runtime runtime(config);
    myriad::Address bound =
        runtime.listen(at, [](myriad::Shard& shard) { return std::make_unique<Room>(shard); });
    g_runtime = &runtime;
    ::signal(SIGINT, stop_on_signal);
    ::signal(SIGTERM, stop_on_signal);
    runtime.run([&] {
      std::printf("chat_room: listening on %s (%s, %u shards)\n", bound.to_string().c_str(),
                  runtime.backend().name.c_str(), runtime.shard_count());
      std::fflush(stdout);
    });
    g_runtime = nullptr;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat_room: %s\n", e.what());
    return 1;
  }
  return 0;
}
