// asio_echo.cpp -- reference TCP echo server: Boost.Asio, one thread, one io_context.
//
// A deliberately minimal baseline for the myriad benchmarks, in the classic
// Asio style: a shared_ptr session per connection with a 16 KiB buffer,
// async_read_some followed by async_write of what was read, then read again.
// Nothing tuned beyond the obvious (io_context given concurrency hint 1).
//
// usage: ref-asio-echo [--listen HOST:PORT]   (default 127.0.0.1:7100)
#include <utility>  // Boost 1.74's Asio needs this first with GCC 12 in C++20 mode

#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket s) : sock_(std::move(s)) {}
  void read() {
    sock_.async_read_some(asio::buffer(buf_),
                          [self = shared_from_this()](error_code ec, std::size_t n) {
                            if (!ec) self->write(n);
                          });
  }

 private:
  void write(std::size_t n) {
    asio::async_write(sock_, asio::buffer(buf_, n),
                      [self = shared_from_this()](error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }
  tcp::socket sock_;
  std::array<char, 16384> buf_;
};

class server {
 public:
  server(asio::io_context& io, const tcp::endpoint& ep) : acceptor_(io), retry_(io) {
    acceptor_.open(ep.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(4096);
    accept();
  }
  tcp::endpoint local() const { return acceptor_.local_endpoint(); }

 private:
  void accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket s) {
      if (ec) {  // e.g. EMFILE: back off briefly instead of spinning
        retry_.expires_after(std::chrono::milliseconds(50));
        retry_.async_wait([this](error_code) { accept(); });
        return;
      }
      error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::make_shared<session>(std::move(s))->read();
      accept();
    });
  }
  tcp::acceptor acceptor_;
  asio::steady_timer retry_;
};

int main(int argc, char** argv) {
  std::string spec = "127.0.0.1:7100";
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--listen") && i + 1 < argc)
      spec = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--listen HOST:PORT]\n", argv[0]);
      return 2;
    }
  }
  auto colon = spec.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "bad --listen %s\n", spec.c_str());
    return 2;
  }
  std::string host = spec.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  std::string port = spec.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535) {
    std::fprintf(stderr, "bad --listen %s\n", spec.c_str());
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  try {
    asio::io_context io(1);
    server srv(io, tcp::endpoint(asio::ip::make_address(host),
                                 static_cast<unsigned short>(std::stoi(port))));
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](error_code, int) { io.stop(); });
    auto ep = srv.local();
    std::printf(ep.address().is_v6() ? "listening on [%s]:%u\n" : "listening on %s:%u\n",
                ep.address().to_string().c_str(), unsigned(ep.port()));
    std::fflush(stdout);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
