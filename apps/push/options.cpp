#include "options.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace push {

namespace {

const char* kUsage = R"(usage: myriad-push [options]

The status-push server (docs/PUSH.md). Subscribers connect by WebSocket, Server-Sent Events or
plain TCP and follow topics; publishers POST messages (or PUB them on an authorised connection);
every message has an offset in its topic and the server's epoch, and a subscriber that comes back
with its last offset gets exactly what it missed, or an explicit LOST signal.

On every --listen (HTTP):  GET /ws/<topic>[,<topic>...]   WebSocket subscriber
                           GET /sse/<topic>[,<topic>...]  Server-Sent Events subscriber
                           POST /publish/<topic>          publish the body; JSON reply with offset
                           GET /metrics  GET /healthz  GET / (the live page)
On every --tcp-listen:     the plain TCP protocol (SUB/UNSUB/PING/AUTH/PUB/CMD, MSG deliveries)

Listeners:
  --listen HOST:PORT        an HTTP listener (repeatable; default 127.0.0.1:8080)
  --tcp-listen HOST:PORT    a plain TCP listener (repeatable; default none)
Topics:
  --history N               messages kept per topic for resumes (default 1000; 0: none)
  --history-bytes SIZE      bytes kept per topic (default 1MiB)
  --history-age DUR         how long a message is kept (default 10m; 0: no limit)
  --history-total SIZE      bytes kept over all topics, oldest go first (default 256MiB)
  --retain PREFIXES         topics whose last value a new subscriber gets at once: comma-separated
                            prefixes, '*' for every topic, 'none' for none (default *)
  --topic-policy [PREFIX=]POLICY  what a subscriber above --max-queued gets: close (disconnected,
                            counted), drop (the oldest held messages go, counted; it sees the gap)
                            or latest (only the newest message per topic is held); for topics
                            starting with PREFIX (repeatable; the longest prefix wins), or without
                            PREFIX= for every other topic (default latest)
  --max-queued SIZE         bytes queued on a subscriber before its policy applies (default 256KiB)
  --max-held SIZE           drop: bytes held back per slow subscriber (default 256KiB)
  --max-message SIZE        largest message published (default 256KiB; at most 16MiB)
  --max-topics N            topics known at once (default 100000)
  --max-topics-per-connection N  subscriptions one connection may hold (default 64)
  --command-topic TOPIC     client commands (CMD) are published here for the application, each as
                            "<sender>\n<bytes>" (default none: refused with NO CMD, counted)
Authentication and limits:
  --subscribe-secret S      subscribing needs a JWT (HS256, signed with S) naming the topics
                            ("topics": ["a", "dev/*"]) and "exp" (default none: anyone)
  --subscribe-secret-file F the same, read from the file F (first line)
  --publish-secret S        publishing needs "Authorization: Bearer S" (HTTP) or "AUTH S" (TCP,
                            WebSocket); on a loopback listener nothing is needed (default none)
  --publish-secret-file F   the same, read from the file F (first line)
  --connect-rate N          new subscriber connections per second, overall (default 0: no limit)
  --connect-rate-per-source N  per source address as --trust-proxy reports it (default 0: none)
  --trust-proxy             believe X-Forwarded-For / X-Real-IP for the source address (default off)
  --make-token CLAIMS       print a token for the JSON claims, signed with --subscribe-secret, and
                            exit (e.g. '{"topics":["*"],"exp":2000000000}')
Transports:
  --ws-ping DUR             ping WebSocket clients idle this long, drop them if no answer
                            (default 30s; 0: never)
  --ws-no-compression       decline permessage-deflate (default: accept it)
  --ws-max-message SIZE     largest message a WebSocket client may send (default 1MiB)
  --sse-retry DUR           the reconnection delay SSE clients are given (default 2s)
  --heartbeat DUR           an SSE comment after DUR without an event (default 15s)
Operations:
  --drain-timeout DUR       on SIGTERM, tell every client to come back later (WebSocket close 1012,
                            SSE retry:, TCP BYE), in batches, within DUR; then stop (default 10s)
  --retry-after DUR         the reconnect delay drained or refused clients are told, plus a random
                            part up to as much again (default 2s)
  --sys-interval DUR        publish the server's own figures on the topic $sys this often
                            (default 1s; 0: never)
  --stats DUR               print a stats line this often (default 0: never)
  --www DIR                 serve GET / from DIR/index.html (default: the copy built in)
Engine (see myriad-server --help):
  --shards N                event-loop threads (default: online CPUs)
  --backend auto|uring|epoll  kernel interface (default auto)
  --buffer-pool SIZE        receive pool (default 64MiB)
  --buffer-size SIZE        one receive chunk (default 16KiB)
  --max-connections N       connections open at once (default 1048576)
  --idle-timeout DUR        close connections that send nothing this long (default 0: never;
                            subscribers are quiet, so keep it off or long)
  --write-high SIZE         high write watermark per connection (default 64KiB)
  --write-low SIZE          low write watermark (default 16KiB)
  --max-write-queue SIZE    close a connection past this much queued output (default 4MiB)
  --cpu N                   pin shard i to CPU N+i (default: no pinning)
  --help                    this text
)";

template <class T>
T parse_count(std::string_view option, std::string_view text) {
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    throw std::invalid_argument(std::string(option) + " " + std::string(text) +
                                ": not a whole number");
  }
  return v;
}

double parse_rate(std::string_view option, std::string_view text) {
  return static_cast<double>(parse_count<uint64_t>(option, text));
}

std::string read_secret(std::string_view option, const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    throw std::invalid_argument(std::string(option) + " " + path + ": cannot read it");
  }
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (line.empty()) throw std::invalid_argument(std::string(option) + " " + path + ": empty");
  return line;
}

}  // namespace

const char* usage() {
  return kUsage;
}

bool is_loopback(const myriad::Address& a) {
  if (a.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr());
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (a.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

Cli parse_cli(int argc, char** argv) {
  Cli cli;
  Options& o = cli.options;
  o.core.drain_timeout = std::chrono::seconds(2);  // the engine's last flush, after our drain
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    auto size = [&] { return myriad::parse_size(value()); };
    auto duration = [&] { return myriad::parse_duration(value()); };
    if (arg == "--help" || arg == "-h") {
      cli.help = true;
    } else if (arg == "--listen") {
      o.listen.push_back(myriad::Address::parse(value()));
    } else if (arg == "--tcp-listen") {
      o.tcp_listen.push_back(myriad::Address::parse(value()));
    } else if (arg == "--history") {
      o.hub.history_count = parse_count<std::size_t>(arg, value());
    } else if (arg == "--history-bytes") {
      o.hub.history_bytes = size();
    } else if (arg == "--history-age") {
      o.hub.history_age = duration();
    } else if (arg == "--history-total") {
      o.hub.history_total = size();
    } else if (arg == "--retain") {
      o.hub.retain.clear();
      std::string_view list = value();
      if (list == "*") {
        o.hub.retain.emplace_back();
      } else if (list != "none") {
        while (!list.empty()) {
          std::size_t comma = list.find(',');
          std::string_view p = list.substr(0, comma);
          if (!p.empty()) o.hub.retain.emplace_back(p);
          list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        }
      }
    } else if (arg == "--topic-policy") {
      std::string_view v = value();
      std::size_t eq = v.rfind('=');
      if (eq == std::string_view::npos) {
        o.hub.policy = myriad::parse_overflow_policy(v);
      } else {
        o.hub.policies.emplace_back(std::string(v.substr(0, eq)),
                                    myriad::parse_overflow_policy(v.substr(eq + 1)));
      }
    } else if (arg == "--max-queued") {
      o.pubsub.max_queued = size();
    } else if (arg == "--max-held") {
      o.pubsub.max_held = size();
    } else if (arg == "--max-message") {
      o.hub.max_message = size();
      if (o.hub.max_message == 0 || o.hub.max_message > (std::size_t{16} << 20)) {
        throw std::invalid_argument("--max-message: 1 byte to 16MiB");
      }
    } else if (arg == "--max-topics") {
      o.hub.max_topics = parse_count<std::size_t>(arg, value());
    } else if (arg == "--max-topics-per-connection") {
      o.max_topics_per_connection = parse_count<std::size_t>(arg, value());
    } else if (arg == "--command-topic") {
      o.command_topic = std::string(value());
      if (!valid_topic(o.command_topic)) {
        throw std::invalid_argument("--command-topic " + o.command_topic + ": not a valid topic");
      }
    } else if (arg == "--subscribe-secret") {
      o.subscribe_secret = std::string(value());
    } else if (arg == "--subscribe-secret-file") {
      o.subscribe_secret = read_secret(arg, std::string(value()));
    } else if (arg == "--publish-secret") {
      o.publish_secret = std::string(value());
    } else if (arg == "--publish-secret-file") {
      o.publish_secret = read_secret(arg, std::string(value()));
    } else if (arg == "--connect-rate") {
      o.connect_rate = parse_rate(arg, value());
    } else if (arg == "--connect-rate-per-source") {
      o.connect_rate_per_source = parse_rate(arg, value());
    } else if (arg == "--trust-proxy") {
      o.trust_proxy = true;
    } else if (arg == "--make-token") {
      cli.make_token = std::string(value());
    } else if (arg == "--ws-ping") {
      o.ws_ping = duration();
    } else if (arg == "--ws-no-compression") {
      o.ws_compression = false;
    } else if (arg == "--ws-max-message") {
      o.ws_max_message = size();
    } else if (arg == "--sse-retry") {
      o.sse_retry = duration();
    } else if (arg == "--heartbeat") {
      o.heartbeat = duration();
    } else if (arg == "--drain-timeout") {
      o.drain_timeout = duration();
    } else if (arg == "--retry-after") {
      o.retry_after = duration();
    } else if (arg == "--sys-interval") {
      o.sys_interval = duration();
    } else if (arg == "--stats") {
      o.stats = duration();
    } else if (arg == "--www") {
      o.www_dir = std::string(value());
    } else if (arg == "--shards") {
      o.core.shards = parse_count<unsigned>(arg, value());
    } else if (arg == "--backend") {
      o.core.backend = myriad::parse_backend(value());
    } else if (arg == "--buffer-pool") {
      o.core.buffer_pool_bytes = size();
    } else if (arg == "--buffer-size") {
      o.core.buffer_size = size();
    } else if (arg == "--max-connections") {
      o.core.max_connections = parse_count<std::size_t>(arg, value());
    } else if (arg == "--idle-timeout") {
      o.core.idle_timeout = duration();
    } else if (arg == "--write-high") {
      o.core.write_high_watermark = size();
    } else if (arg == "--write-low") {
      o.core.write_low_watermark = size();
    } else if (arg == "--max-write-queue") {
      o.core.max_write_queue = size();
    } else if (arg == "--cpu") {
      o.core.first_cpu = parse_count<int>(arg, value());
    } else {
      throw std::invalid_argument("unknown option " + std::string(arg) + " (see --help)");
    }
  }
  if (o.listen.empty()) o.listen.push_back(myriad::Address::parse("127.0.0.1:8080"));
  if (!cli.make_token.empty() && o.subscribe_secret.empty()) {
    throw std::invalid_argument("--make-token needs --subscribe-secret");
  }
  // A request body (a publish) waits whole in the spill buffer.
  o.core.max_spill = std::max(o.core.max_spill, o.hub.max_message + (64 << 10));
  o.core.max_spill = std::max(o.core.max_spill, o.ws_max_message + (64 << 10));
  o.core.validate();
  o.pubsub.validate();
  if (o.pubsub.max_queued >= o.core.max_write_queue) {
    throw std::invalid_argument("--max-queued must be below --max-write-queue");
  }
  return cli;
}

}  // namespace push
