// The plain TCP protocol (docs/PUSH.md, "Plain TCP"): commands one per line, PUB and CMD
// followed by a length and that many bytes; deliveries "MSG <topic> <offset> <length>\n" +
// payload + "\n". A partial command waits in the connection's spill buffer, so an idle
// subscriber holds its session and nothing else.
//
// Threads: one TcpFront per listener, shared by every shard; per-connection state is the
// Session in Connection::user(), used on the connection's shard only.
#pragma once

#include <myriad/myriad.hpp>

#include "commands.hpp"
#include "server.hpp"

namespace push {

class TcpFront final : public myriad::Handler {
 public:
  static constexpr std::size_t kMaxLine = 8192;  // room for a token

  // loopback: the listener is bound to a loopback address, so its clients may publish.
  TcpFront(Server& server, bool loopback) : server_(server), runner_(server), loopback_(loopback) {}

  void on_open(myriad::Connection c) override;
  void on_data(myriad::Connection c, myriad::Chunk data) override;
  void on_write_watermark(myriad::Connection c, bool above_high) override;
  void on_close(myriad::Connection c, myriad::CloseReason reason, int error) override;

  // Tells a session to go: "BYE <retry-ms> <reason>" and close.
  static void goodbye(Server& server, Session& s, std::string_view reason);

 private:
  enum class Step { kDone, kNeedMore, kClosed };
  Step command(myriad::Connection c, Session& s, std::string_view data, std::size_t& used);

  Server& server_;
  CommandRunner runner_;
  bool loopback_;
};

}  // namespace push
