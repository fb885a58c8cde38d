// The built-in encodings byte for byte, and the pub/sub configuration's checks.
#include <myriad/pubsub.hpp>

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace {

using myriad::Message;
using myriad::OverflowPolicy;
using myriad::SharedBuffer;

std::string encode(const myriad::Encoding& e, std::string_view topic, uint64_t offset,
                   std::string_view payload) {
  SharedBuffer p = SharedBuffer::copy(payload);
  Message m{topic, offset, p};
  return std::string(e.encode(m).view());
}

TEST(Encoding, FrameIsLengthTopicOffsetPayloadBigEndian) {
  std::string got =
      encode(myriad::frame_encoding(), "ab", 0x0102030405060708ULL, std::string_view("x\0y", 3));
  std::string want;
  want += std::string("\x00\x00\x00\x0f", 4);  // the rest: 1 + 1 + 2 + 8 + 3 bytes
  want += '\x01';
  want += '\x02';
  want += "ab";
  want += std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8);
  want += std::string("x\0y", 3);
  EXPECT_EQ(got, want);
}

TEST(Encoding, FrameGoodbyeCarriesTheReason) {
  std::string got(myriad::frame_encoding().goodbye("slow consumer").view());
  ASSERT_EQ(got.size(), 4u + 1 + 1 + 8 + 13);
  EXPECT_EQ(got[3], static_cast<char>(1 + 1 + 8 + 13));
  EXPECT_EQ(got[4], '\x02');
  EXPECT_EQ(got[5], '\x00');
  EXPECT_EQ(got.substr(14), "slow consumer");
}

TEST(Encoding, LineIsAHeaderAndAnExactLengthBody) {
  EXPECT_EQ(encode(myriad::line_encoding(), "news", 42, std::string_view("a\nb\0", 4)),
            std::string("MSG news 42 4\na\nb\0\n", 19));
  EXPECT_EQ(encode(myriad::line_encoding(), "t", 1, ""), "MSG t 1 0\n\n");
  EXPECT_EQ(std::string(myriad::line_encoding().goodbye("slow consumer").view()),
            "ERR slow consumer\n");
}

TEST(PubSubConfig, PoliciesParseAndBadValuesAreNamed) {
  EXPECT_EQ(myriad::parse_overflow_policy("close"), OverflowPolicy::kClose);
  EXPECT_EQ(myriad::parse_overflow_policy("drop"), OverflowPolicy::kDrop);
  EXPECT_EQ(myriad::parse_overflow_policy("latest"), OverflowPolicy::kLatest);
  EXPECT_STREQ(myriad::to_string(OverflowPolicy::kLatest), "latest");
  try {
    myriad::parse_overflow_policy("newest");
    ADD_FAILURE() << "accepted 'newest'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("newest"), std::string::npos);
  }
  myriad::PubSubConfig c;
  EXPECT_NO_THROW(c.validate());
  c.max_queued = 0;
  EXPECT_THROW(c.validate(), std::invalid_argument);
  c = {};
  c.drain_check = myriad::Duration(0);
  EXPECT_THROW(c.validate(), std::invalid_argument);
}

TEST(PubSubCounters, SumAndPrint) {
  myriad::PubSubCounters a, b;
  a.deliveries = 3;
  b.deliveries = 4;
  b.dropped = 1;
  a += b;
  EXPECT_EQ(a.deliveries, 7u);
  EXPECT_NE(a.to_string().find("deliveries=7"), std::string::npos);
  EXPECT_NE(a.to_string().find("dropped=1"), std::string::npos);
}

}  // namespace
