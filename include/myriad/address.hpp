// Public. An IPv4 or IPv6 socket address, parsed from "HOST:PORT" or "[V6HOST]:PORT".
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace myriad {

class Address {
 public:
  Address() = default;
  // Numeric hosts only ("127.0.0.1:7000", "[::1]:7000", "0.0.0.0:0"); "localhost" is accepted
  // as 127.0.0.1. Throws std::invalid_argument naming the text.
  static Address parse(std::string_view text);
  static Address from_sockaddr(const sockaddr* sa, socklen_t len);

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const { return length_; }
  int family() const { return storage_.ss_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  std::string to_string() const;
  bool valid() const { return length_ != 0; }

 private:
  sockaddr_storage storage_{};
  socklen_t length_ = 0;
};

}  // namespace myriad
