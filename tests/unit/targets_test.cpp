// Unit tests for the load generator's target lists (apps/load/targets.hpp).
#include "targets.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace {

using myriad::Address;
using myriad::load::parse_targets;

std::vector<std::string> strings(const std::vector<Address>& addresses) {
  std::vector<std::string> out;
  for (const Address& a : addresses) out.push_back(a.to_string());
  return out;
}

TEST(Targets, Single) {
  auto targets = parse_targets("127.0.0.1:7000");
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].family(), AF_INET);
  EXPECT_EQ(targets[0].port(), 7000);
  EXPECT_EQ(targets[0].to_string(), "127.0.0.1:7000");
}

TEST(Targets, IPv6InBrackets) {
  auto targets = parse_targets("[::1]:7001");
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].family(), AF_INET6);
  EXPECT_EQ(targets[0].port(), 7001);
  EXPECT_EQ(targets[0].to_string(), "[::1]:7001");
}

TEST(Targets, RangeGivesEveryAddressInOrderWithThePort) {
  auto targets = parse_targets("127.0.0.1-127.0.0.4:7000");
  EXPECT_EQ(strings(targets), (std::vector<std::string>{"127.0.0.1:7000", "127.0.0.2:7000",
                                                        "127.0.0.3:7000", "127.0.0.4:7000"}));
  for (const Address& a : targets) EXPECT_EQ(a.family(), AF_INET);
}

TEST(Targets, RangeOfOneAndAcrossAnOctet) {
  EXPECT_EQ(strings(parse_targets("127.0.0.9-127.0.0.9:80")),
            (std::vector<std::string>{"127.0.0.9:80"}));
  EXPECT_EQ(
      strings(parse_targets("127.0.0.254-127.0.1.1:9")),
      (std::vector<std::string>{"127.0.0.254:9", "127.0.0.255:9", "127.0.1.0:9", "127.0.1.1:9"}));
  EXPECT_EQ(parse_targets("127.0.0.1-127.0.255.255:1").size(), 65535u);
}

TEST(Targets, CommaList) {
  auto targets = parse_targets("127.0.0.1:7000,[::1]:7001,127.0.0.5-127.0.0.6:7002");
  EXPECT_EQ(strings(targets), (std::vector<std::string>{"127.0.0.1:7000", "[::1]:7001",
                                                        "127.0.0.5:7002", "127.0.0.6:7002"}));
}

TEST(Targets, BadRangeOrderThrows) {
  EXPECT_THROW(parse_targets("127.0.0.4-127.0.0.1:7000"), std::invalid_argument);
}

TEST(Targets, RangeOverTheLimitThrows) {
  EXPECT_THROW(parse_targets("10.0.0.0-10.1.0.0:7000"), std::invalid_argument);
}

TEST(Targets, NonIPv4RangeThrows) {
  EXPECT_THROW(parse_targets("::1-::2:7000"), std::invalid_argument);
  EXPECT_THROW(parse_targets("[::1]-[::2]:7000"), std::invalid_argument);
  EXPECT_THROW(parse_targets("127.0.0.1-localhost:7000"), std::invalid_argument);
  EXPECT_THROW(parse_targets("127.0.0.1-127.0.0.x:7000"), std::invalid_argument);
}

TEST(Targets, MissingPortThrows) {
  EXPECT_THROW(parse_targets("127.0.0.1"), std::invalid_argument);
  EXPECT_THROW(parse_targets("127.0.0.1-127.0.0.4"), std::invalid_argument);
  EXPECT_THROW(parse_targets("127.0.0.1-127.0.0.4:"), std::invalid_argument);
  EXPECT_THROW(parse_targets("[::1]"), std::invalid_argument);
  EXPECT_THROW(parse_targets("127.0.0.1:7000,127.0.0.2"), std::invalid_argument);
}

TEST(Targets, EmptyThrows) {
  EXPECT_THROW(parse_targets(""), std::invalid_argument);
  EXPECT_THROW(parse_targets(","), std::invalid_argument);
}

TEST(Targets, ErrorsNameTheBadPart) {
  try {
    parse_targets("127.0.0.1:7000,127.0.0.9-127.0.0.3:7000");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.9-127.0.0.3"), std::string::npos) << e.what();
  }
  try {
    parse_targets("127.0.0.1:7000,nonsense:7000");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("nonsense"), std::string::npos) << e.what();
  }
}

}  // namespace
