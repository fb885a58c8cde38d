#include "topic_support.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <future>
#include <random>
#include <stdexcept>

namespace topic_test {

const char* kind_name(Kind k) {
  return k == Kind::kRaw ? "raw" : k == Kind::kFrame ? "frame" : "line";
}

// ---- TopicHandler ----

void TopicHandler::on_open(myriad::Connection) {
  open_.fetch_add(1);
}

void TopicHandler::on_data(myriad::Connection c, myriad::Chunk data) {
  // Whole commands are taken from the chunk itself; only a partial one is spilled.
  bool spilled = !c.spill().empty();
  if (spilled) {
    if (!c.spill_append(data.bytes())) return;
    data.release();
  }
  std::string_view all =
      spilled ? std::string_view(reinterpret_cast<const char*>(c.spill().data()), c.spill().size())
              : data.view();
  std::size_t done = 0;
  for (;;) {
    std::size_t used = 0;
    if (!command(c, all.substr(done), used)) break;
    done += used;
  }
  if (spilled) {
    c.spill_consume(done);
  } else if (done < all.size()) {
    c.spill_append(std::as_bytes(std::span(all.data() + done, all.size() - done)));
  }
}

bool TopicHandler::command(myriad::Connection c, std::string_view data, std::size_t& used) {
  std::size_t nl = data.find('\n');
  if (nl == std::string_view::npos) return false;
  std::string_view line = data.substr(0, nl);
  used = nl + 1;
  auto word = [&line]() {
    std::size_t sp = line.find(' ');
    std::string_view w = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    return w;
  };
  std::string_view verb = word();
  myriad::PubSub& ps = *pubsub.load();
  if (verb == "SUB") {
    std::string_view topic = word();
    std::string_view kind = word();
    myriad::EncodingId e = kind == "frame"  ? frame_enc
                           : kind == "line" ? line_enc
                                            : myriad::PubSub::kRaw;
    if (!ps.subscribe(c, topic, e)) ADD_FAILURE() << "subscribe " << topic << " refused";
  } else if (verb == "UNSUB") {
    ps.unsubscribe(c, word());
  } else if (verb == "UNSUBALL") {
    ps.unsubscribe_all(c);
  } else if (verb == "NAME") {
    std::lock_guard lock(mutex_);
    names_[std::string(word())] = c;
  } else if (verb == "PUB") {
    std::string_view topic = word();
    std::string_view len_text = word();
    std::size_t len = 0;
    std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (data.size() < used + len) return false;  // the payload is not all here yet
    ps.publish(topic, data.substr(used, len));
    used += len;
  } else if (verb == "CLOSE") {
    c.close();
  } else {
    ADD_FAILURE() << "unknown test command '" << verb << "'";
  }
  return true;
}

void TopicHandler::on_write_watermark(myriad::Connection c, bool above_high) {
  if (!above_high) pubsub.load()->on_writable(c);
}

void TopicHandler::on_close(myriad::Connection c, myriad::CloseReason, int) {
  if (forward_close.load()) pubsub.load()->on_close(c);
  closed_.fetch_add(1);
}

myriad::Connection TopicHandler::named(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = names_.find(name);
  return it == names_.end() ? myriad::Connection() : it->second;
}

// ---- TopicServer ----

TopicServer::TopicServer(myriad::Config config, myriad::PubSubConfig pubsub_config)
    : runtime_(std::make_unique<myriad::Runtime>(config)) {
  address_ = runtime_->listen(myriad::Address::parse("127.0.0.1:0"), handler_);
  pubsub_ = std::make_unique<myriad::PubSub>(*runtime_, std::move(pubsub_config));
  handler_.frame_enc = pubsub_->add_encoding(myriad::frame_encoding());
  handler_.line_enc = pubsub_->add_encoding(myriad::line_encoding());
  handler_.pubsub.store(pubsub_.get());
  runtime_->start();
}

TopicServer::~TopicServer() {
  stop();
}

void TopicServer::stop() {
  if (!runtime_) return;
  runtime_->stop();
  runtime_->wait();
  pubsub_.reset();
  runtime_.reset();
}

void TopicServer::on_shard(unsigned index, const std::function<void()>& fn) {
  std::promise<void> done;
  runtime_->shard(index).post([&] {
    fn();
    done.set_value();
  });
  ASSERT_EQ(done.get_future().wait_for(30s), std::future_status::ready);
}

void TopicServer::on_connection(const std::string& name,
                                const std::function<void(myriad::Connection)>& fn) {
  myriad::Connection c;
  ASSERT_TRUE(test::eventually([&] {
    c = handler_.named(name);
    return c != myriad::Connection();
  })) << "no connection named "
      << name;
  on_shard(c.shard().index(), [&] { fn(c); });
}

// ---- Subscriber ----

namespace {
uint64_t get_be(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
}  // namespace

bool Subscriber::parse() {
  if (kind == Kind::kRaw) {
    raw += buffer;
    buffer.clear();
    return true;
  }
  std::size_t at = 0;
  for (;;) {
    if (kind == Kind::kFrame) {
      if (buffer.size() - at < 4) break;
      uint64_t rest = get_be(buffer.data() + at, 4);
      if (rest < 10) return false;
      if (buffer.size() - at - 4 < rest) break;
      const char* p = buffer.data() + at + 4;
      Frame f;
      f.kind = static_cast<uint8_t>(p[0]);
      std::size_t tlen = static_cast<uint8_t>(p[1]);
      if (2 + tlen + 8 > rest) return false;
      f.topic.assign(p + 2, tlen);
      f.offset = get_be(p + 2 + tlen, 8);
      f.payload.assign(p + 2 + tlen + 8, rest - 2 - tlen - 8);
      frames.push_back(std::move(f));
      at += 4 + rest;
    } else {
      std::size_t nl = buffer.find('\n', at);
      if (nl == std::string::npos) break;
      std::string_view head(buffer.data() + at, nl - at);
      if (head.substr(0, 4) == "ERR ") {
        Frame f;
        f.kind = 2;
        f.payload = std::string(head.substr(4));
        frames.push_back(std::move(f));
        at = nl + 1;
        continue;
      }
      if (head.substr(0, 4) != "MSG ") return false;
      head.remove_prefix(4);
      std::size_t s1 = head.find(' ');
      std::size_t s2 = head.find(' ', s1 + 1);
      if (s1 == std::string_view::npos || s2 == std::string_view::npos) return false;
      Frame f;
      f.topic = std::string(head.substr(0, s1));
      std::string_view off = head.substr(s1 + 1, s2 - s1 - 1);
      std::string_view len = head.substr(s2 + 1);
      std::size_t n = 0;
      if (std::from_chars(off.data(), off.data() + off.size(), f.offset).ec != std::errc() ||
          std::from_chars(len.data(), len.data() + len.size(), n).ec != std::errc()) {
        return false;
      }
      if (buffer.size() - (nl + 1) < n + 1) break;
      f.payload = buffer.substr(nl + 1, n);
      if (buffer[nl + 1 + n] != '\n') return false;
      frames.push_back(std::move(f));
      at = nl + 1 + n + 1;
    }
  }
  buffer.erase(0, at);
  return true;
}

Subscriber connect(const myriad::Address& to, Kind kind, int receive_buffer, bool move_fd_high) {
  int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (move_fd_high) {
    int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 10000);
    ::close(fd);
    if (high < 0) throw std::runtime_error(std::string("F_DUPFD: ") + std::strerror(errno));
    fd = high;
  }
  if (receive_buffer > 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  if (::connect(fd, to.sockaddr_ptr(), to.length()) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("connect " + to.to_string() + ": " + std::strerror(e));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Subscriber s;
  s.socket = test::Socket(fd);
  s.kind = kind;
  return s;
}

bool pump(const std::vector<Subscriber*>& subs, const std::function<bool()>& done,
          std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  std::vector<pollfd> fds;
  std::vector<Subscriber*> who;
  static thread_local std::vector<char> buf(1 << 16);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return done();
    fds.clear();
    who.clear();
    for (Subscriber* s : subs) {
      if (s == nullptr || s->eof) continue;
      fds.push_back(pollfd{s->socket.fd(), POLLIN, 0});
      who.push_back(s);
    }
    if (fds.empty()) return done();
    if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Subscriber& s = *who[i];
      ssize_t n = ::recv(s.socket.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        s.eof = true;
        continue;
      }
      s.buffer.append(buf.data(), static_cast<std::size_t>(n));
      if (!s.parse()) {
        s.bad = true;
        s.eof = true;
      }
    }
  }
  return true;
}

bool pump_frames(const std::vector<Subscriber*>& subs, std::size_t n,
                 std::chrono::milliseconds limit) {
  return pump(
      subs,
      [&] {
        for (Subscriber* s : subs) {
          if (s != nullptr && !s->eof && s->frames.size() < n) return false;
        }
        return true;
      },
      limit);
}

std::string sub_command(const std::string& topic, Kind kind) {
  return "SUB " + topic + " " + kind_name(kind) + "\n";
}

std::string payload_for(uint64_t seq, std::size_t size) {
  std::string p(size, '\0');
  std::mt19937_64 rng(seq * 7919 + size);
  for (std::size_t i = 0; i < size; ++i) p[i] = static_cast<char>(rng() & 0xff);
  std::string tag = std::to_string(seq);
  for (std::size_t i = 0; i < tag.size() && i < size; ++i) p[i] = tag[i];
  if (size > tag.size() + 2) {
    p[tag.size()] = '\n';  // line framing must not be fooled by these
    p[tag.size() + 1] = '\0';
  }
  return p;
}

std::size_t heap_in_use() {
  struct mallinfo2 m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

}  // namespace topic_test
