// The command language subscribers speak, the same over plain TCP (one command per line) and
// WebSocket (one command per text or binary message), and the replies the server sends
// (docs/PUSH.md, "Commands"):
//
//   SUB <topic> [<since> <epoch>]   OK SUB <topic> <epoch> <last>   then LOST ..., then MSG ...
//   UNSUB <topic>                   OK UNSUB <topic>
//   PING [<text>]                   PONG [<text>]
//   AUTH <token>                    OK AUTH <subject> <expires> | OK AUTH publisher
//   PUB <topic> ...                 OK PUB <topic> <offset> <epoch>
//   CMD ...                         OK CMD <offset>
//   a refused request               NO <verb> <topic or -> <reason>        (the connection stays)
//   a broken or unauthorised one    ERR <reason>, then the server closes
//
// CommandRunner executes one parsed command for a session and writes replies through Reply,
// so the TCP and WebSocket fronts share every rule. Shard thread only.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "server.hpp"

namespace push {

// Where a front's replies go: control lines (without their newline), frames as they are, and
// the end of the connection.
class Reply {
 public:
  virtual ~Reply() = default;
  virtual void line(std::string_view text) = 0;
  virtual void frame(const myriad::SharedBuffer& frame) = 0;
  // A fatal error: say why and close. code: the WebSocket close code (TCP ignores it).
  virtual void fail(std::string_view reason, uint16_t code) = 0;
};

// WebSocket close codes of our own (4000-4999 are the application's).
constexpr uint16_t kCloseUnauthorized = 4001;
constexpr uint16_t kCloseForbidden = 4003;
constexpr uint16_t kCloseSlowConsumer = 4008;

class CommandRunner {
 public:
  explicit CommandRunner(Server& server) : server_(server) {}

  // One command: `line` is the command line (no newline), `payload` the bytes of PUB or CMD.
  // False when the connection was failed (ERR sent, closing).
  bool run(Session& s, std::string_view line, std::span<const std::byte> payload, Reply& reply);

  // Subscribes s to topic and sends the reply, the LOST notice if any, and the replay. Shared
  // with the URL form of subscribing (WebSocket /ws/<topics>). False when failed.
  bool subscribe(Session& s, std::string_view topic, const Resume& resume, Reply& reply);

  // Splits off the first space-separated word of line.
  static std::string_view word(std::string_view& line);

 private:
  Server& server_;
};

}  // namespace push
