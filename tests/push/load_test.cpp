// myriad-load subscribe --protocol push against the real myriad-push, on both backends: every
// subscriber gets every update once and in order, and after a reconnect wave (everyone drops
// and comes back at once, resuming from its last offset) still nothing is lost or repeated.
// scripts/push-demo.sh runs the same at 100,000 subscribers.
#include "push_support.hpp"

namespace push_test {
namespace {

TEST_P(PushTest, LoadGeneratorSubscribersSurviveAReconnectWave) {
  PushProcess push(GetParam());
  std::string target = "127.0.0.1:" + std::to_string(push.tcp_port());
  std::string json = ::testing::TempDir() + "/push-load.json";
  test::Process load({MYRIAD_LOAD_BIN,
                      "subscribe",
                      "--protocol",
                      "push",
                      "--target",
                      target,
                      "--connections",
                      "300",
                      "--topics",
                      "3",
                      "--topic",
                      "wave",
                      "--rate",
                      "300",
                      "--size",
                      "48",
                      "--warmup",
                      "200ms",
                      "--duration",
                      "800ms",
                      "--reconnect-wave",
                      "--backend",
                      GetParam() == myriad::BackendKind::kUring ? "uring" : "epoll",
                      "--quiet",
                      "--json",
                      json});
  int rc = load.wait(120s);
  EXPECT_EQ(rc, 0) << load.out() << load.err();
  std::string j = test::read_file(json);
  EXPECT_EQ(test::json_number(j, "subscribed"), 300) << j;
  EXPECT_EQ(test::json_number(j, "wave_closed"), 300) << j;
  EXPECT_EQ(test::json_number(j, "wave_back"), 300) << j;
  EXPECT_EQ(test::json_number(j, "lost"), 0) << j;
  EXPECT_EQ(test::json_number(j, "duplicates"), 0) << j;
  EXPECT_EQ(test::json_number(j, "corrupt"), 0) << j;
  EXPECT_GT(test::json_number(j, "deliveries"), 0) << j;
  EXPECT_EQ(test::json_number(j, "deliveries"), test::json_number(j, "deliveries_expected"));
  // The server replayed what the wave missed, from its history.
  EXPECT_GE(metric(push.http_port(), "myriad_push_resumes_total{outcome=\"recovered\"}"), 300);
  EXPECT_EQ(metric(push.http_port(), "myriad_push_resumes_total{outcome=\"lost_history\"}"), 0);
}

}  // namespace
}  // namespace push_test
