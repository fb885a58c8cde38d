// Unit tests for socket addresses (include/myriad/address.hpp).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <myriad/address.hpp>

#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

namespace {

using myriad::Address;

// Expects f() to throw std::invalid_argument whose message contains every one of `needles`.
void expect_invalid(const std::function<void()>& f, std::initializer_list<std::string> needles,
                    const std::string& context) {
  try {
    f();
    ADD_FAILURE() << context << ": no exception";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    for (const std::string& needle : needles) {
      EXPECT_NE(what.find(needle), std::string::npos)
          << context << ": message '" << what << "' does not name '" << needle << "'";
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << context << ": threw something else: " << e.what();
  }
}

TEST(Address, ParsesIPv4) {
  Address a = Address::parse("127.0.0.1:7000");
  EXPECT_TRUE(a.valid());
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.length(), sizeof(sockaddr_in));
  EXPECT_EQ(a.port(), 7000);
  const auto* sin = reinterpret_cast<const sockaddr_in*>(a.sockaddr_ptr());
  EXPECT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000001u);
  EXPECT_EQ(ntohs(sin->sin_port), 7000);
  EXPECT_EQ(a.to_string(), "127.0.0.1:7000");
}

TEST(Address, ParsesIPv6) {
  Address a = Address::parse("[::1]:443");
  EXPECT_TRUE(a.valid());
  EXPECT_EQ(a.family(), AF_INET6);
  EXPECT_EQ(a.length(), sizeof(sockaddr_in6));
  EXPECT_EQ(a.port(), 443);
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a.sockaddr_ptr());
  EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
  EXPECT_EQ(a.to_string(), "[::1]:443");
  EXPECT_EQ(Address::parse("[fe80::1:2]:0").to_string(), "[fe80::1:2]:0");
}

TEST(Address, LocalhostIsLoopbackIPv4) {
  Address a = Address::parse("localhost:8080");
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.to_string(), "127.0.0.1:8080");
}

TEST(Address, PortBounds) {
  EXPECT_EQ(Address::parse("0.0.0.0:0").port(), 0);
  EXPECT_EQ(Address::parse("1.2.3.4:65535").port(), 65535);
  for (const char* text : {"1.2.3.4:65536", "1.2.3.4:99999999999", "1.2.3.4:", "1.2.3.4:-1",
                           "1.2.3.4:80x", "1.2.3.4: 80", "1.2.3.4", "[::1]", "[::1]:", "[::1]80",
                           "host.example:80", "1.2.3.256:80", ""}) {
    expect_invalid([&] { Address::parse(text); }, {std::string("'") + text + "'"},
                   std::string("Address::parse(\"") + text + "\")");
  }
}

TEST(Address, ToStringRoundTrips) {
  for (const char* text : {"127.0.0.1:7000", "10.1.2.3:1", "255.255.255.255:65535", "0.0.0.0:0",
                           "[::1]:7000", "[2001:db8::42]:9", "[::]:0", "[::ffff:127.0.0.1]:80"}) {
    Address a = Address::parse(text);
    EXPECT_EQ(a.to_string(), text);
    Address b = Address::parse(a.to_string());
    EXPECT_EQ(b.family(), a.family());
    EXPECT_EQ(b.length(), a.length());
    EXPECT_EQ(std::memcmp(a.sockaddr_ptr(), b.sockaddr_ptr(), a.length()), 0) << text;
  }
}

TEST(Address, FromSockaddrKeepsTheAddress) {
  Address a = Address::parse("[2001:db8::7]:1234");
  Address b = Address::from_sockaddr(a.sockaddr_ptr(), a.length());
  EXPECT_EQ(b.to_string(), "[2001:db8::7]:1234");
  EXPECT_EQ(b.length(), a.length());
}

TEST(Address, SetPort) {
  Address a = Address::parse("127.0.0.1:0");
  a.set_port(9000);
  EXPECT_EQ(a.port(), 9000);
  EXPECT_EQ(a.to_string(), "127.0.0.1:9000");
  Address b = Address::parse("[::1]:1");
  b.set_port(65535);
  EXPECT_EQ(b.port(), 65535);
  EXPECT_EQ(b.to_string(), "[::1]:65535");
}

TEST(Address, DefaultIsInvalid) {
  Address a;
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(a.port(), 0);
}

}  // namespace
