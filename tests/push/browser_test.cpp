// The live page in a real browser: Chromium headless (Debian's chromium, driven by
// puppeteer-core from tests/browser) opens GET /, and the test reads what the page shows as
// messages are published: topic rows updating, topics followed from $sys, and the server's
// figures. Skips loudly where chromium, node or puppeteer-core is not installed.
#include <sys/stat.h>

#include "push_support.hpp"

namespace push_test {
namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string json_string(const std::string& json, const std::string& key) {
  std::size_t at = json.find("\"" + key + "\":\"");
  if (at == std::string::npos) return "(absent)";
  at += key.size() + 4;
  return json.substr(at, json.find('"', at) - at);
}

TEST_P(PushTest, BrowserShowsTopicsAndFiguresLive) {
  if (!exists("/usr/bin/chromium")) {
    GTEST_SKIP() << "chromium is not installed (Debian package chromium; scripts/deps.sh "
                    "installs it): the live page was not tested in a browser";
  }
  const std::string modules = std::string(PUSH_BROWSER_DIR) + "/node_modules";
  if (!exists(modules + "/puppeteer-core") || !exists("/usr/bin/node")) {
    GTEST_SKIP() << "puppeteer-core is not in " << modules
                 << " (scripts/deps.sh runs npm ci there) or node is missing: the live page "
                    "was not tested in a browser";
  }
  PushProcess push(GetParam(), {"--sys-interval", "200ms"});
  test::Process browser({"/usr/bin/env", "NODE_PATH=" + modules, "/usr/bin/node",
                         std::string(PUSH_TEST_DIR) + "/dashboard.cjs",
                         "http://127.0.0.1:" + std::to_string(push.http_port())});
  int rc = browser.wait(120s);
  const std::string& out = browser.out();
  ASSERT_EQ(rc, 0) << out << browser.err();
  EXPECT_EQ(json_string(out, "status"), "live") << out;
  EXPECT_EQ(json_string(out, "epoch"), push.epoch()) << out;
  EXPECT_NE(out.find("\"demo\":[\"demo/a\",\"3\",\"3\",\"hello-browser-3\"]"), std::string::npos)
      << out;
  EXPECT_NE(out.find("\"auto\":[\"auto/b\",\"1\",\"1\",\"found-by-sys\"]"), std::string::npos)
      << out;
  EXPECT_GE(std::stoi(json_string(out, "ws")), 1) << out;
  EXPECT_NE(out.find("\"lost\":[]"), std::string::npos) << out;
  std::cout << "[ note ] " << out;
}

}  // namespace
}  // namespace push_test
