#include "targets.hpp"

#include <arpa/inet.h>

#include <stdexcept>
#include <string>

namespace myriad::load {

std::vector<Address> parse_targets(std::string_view text) {
  std::vector<Address> out;
  while (!text.empty()) {
    std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    std::size_t colon = item.rfind(':');
    std::size_t dash = item.find('-');
    if (dash == std::string_view::npos || item.front() == '[' || colon == std::string_view::npos ||
        dash > colon) {
      out.push_back(Address::parse(item));
      continue;
    }
    std::string first(item.substr(0, dash));
    std::string last(item.substr(dash + 1, colon - dash - 1));
    std::string_view port = item.substr(colon);
    in_addr a{}, b{};
    if (inet_pton(AF_INET, first.c_str(), &a) != 1 || inet_pton(AF_INET, last.c_str(), &b) != 1) {
      throw std::invalid_argument("target range '" + std::string(item) + "': IPv4 addresses only");
    }
    uint32_t lo = ntohl(a.s_addr), hi = ntohl(b.s_addr);
    if (hi < lo || hi - lo >= 65536) {
      throw std::invalid_argument("target range '" + std::string(item) +
                                  "': empty or over 65536 addresses");
    }
    for (uint32_t ip = lo; ip <= hi; ++ip) {
      in_addr x{htonl(ip)};
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &x, buf, sizeof(buf));
      out.push_back(Address::parse(std::string(buf) + std::string(port)));
    }
  }
  if (out.empty()) throw std::invalid_argument("no target given");
  return out;
}

}  // namespace myriad::load
