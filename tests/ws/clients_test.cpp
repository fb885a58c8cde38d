// Real WebSocket clients that no one here wrote, against the real myriad-server binary on both
// backends: python3-websockets (a strict RFC 6455 client) and Chromium headless driven by
// puppeteer-core. Each skips, loudly, only when its package is not installed (scripts/deps.sh
// installs them).
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

// Starts myriad-server and returns its port (0 when it did not come up).
int start_server(test::Process& server) {
  std::string line = server.read_line(30s);
  auto at = line.find("127.0.0.1:");
  if (at == std::string::npos) {
    ADD_FAILURE() << "myriad-server did not start: " << line << server.err();
    return 0;
  }
  return std::atoi(line.c_str() + at + 10);
}

std::string backend_arg(myriad::BackendKind kind) {
  return kind == myriad::BackendKind::kUring ? "uring" : "epoll";
}

bool python_websockets_installed() {
  return std::system("/usr/bin/python3 -c 'import websockets' >/dev/null 2>&1") == 0;
}

class WsClients : public BackendTest {};

TEST_P(WsClients, PythonWebsocketsRoundTrips) {
  if (!python_websockets_installed()) {
    GTEST_SKIP() << "python3-websockets is not installed for /usr/bin/python3 (Debian package "
                    "python3-websockets; scripts/deps.sh installs it)";
  }
  test::Process server({MYRIAD_SERVER_BIN, "--protocol", "ws-echo", "--listen", "127.0.0.1:0",
                        "--shards", "2", "--backend", backend_arg(GetParam())});
  int port = start_server(server);
  ASSERT_GT(port, 0);
  test::Process client(
      {"/usr/bin/python3", WS_PYTHON_CLIENT, "ws://127.0.0.1:" + std::to_string(port) + "/"});
  int rc = client.wait(120s);
  EXPECT_EQ(rc, 0) << client.out() << client.err();
  EXPECT_NE(client.out().find("checks passed"), std::string::npos) << client.out();
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(30s), 0) << server.err();
  // The server saw compressed messages and closed every WebSocket cleanly.
  EXPECT_GT(test::field(server.out(), "ws_compressed_in"), 0) << server.out();
  EXPECT_EQ(test::field(server.out(), "ws_handshakes"), 2) << server.out();
  EXPECT_EQ(test::field(server.out(), "ws_closes_in"), 2) << server.out();
  EXPECT_EQ(test::field(server.out(), "ws_abnormal_closes"), 0) << server.out();
  EXPECT_EQ(test::field(server.out(), "ws_protocol_errors"), 0) << server.out();
}

// Chromium headless loads a page from myriad-server --protocol http (--static), which opens a
// WebSocket to /ws on the same server (the ws-echo upgrade; Chromium offers permessage-deflate)
// and an EventSource on /sse/clock; the test reads what the page received.
TEST_P(WsClients, ChromiumHeadlessWebSocketAndEventSource) {
  struct stat st {};
  if (::stat("/usr/bin/chromium", &st) != 0) {
    GTEST_SKIP() << "chromium is not installed (Debian package chromium; scripts/deps.sh "
                    "installs it)";
  }
  std::string modules = std::string(WS_BROWSER_DIR) + "/node_modules/puppeteer-core";
  if (::stat(modules.c_str(), &st) != 0 || std::system("command -v node >/dev/null") != 0) {
    GTEST_SKIP() << "puppeteer-core is not installed in " << WS_BROWSER_DIR
                 << " (scripts/deps.sh runs npm install there) or node is missing";
  }
  test::Process server({MYRIAD_SERVER_BIN, "--protocol", "http", "--listen", "127.0.0.1:0",
                        "--shards", "2", "--backend", backend_arg(GetParam()), "--static",
                        std::string(WS_BROWSER_DIR) + "/page", "--sse-interval", "100ms"});
  int port = start_server(server);
  ASSERT_GT(port, 0);
  test::Process browser({"/bin/sh", "-c",
                         std::string("cd '") + WS_BROWSER_DIR + "' && exec node run.mjs " +
                             "http://127.0.0.1:" + std::to_string(port) + "/index.html"});
  int rc = browser.wait(120s);
  const std::string& out = browser.out();
  ASSERT_EQ(rc, 0) << out << browser.err();
  SCOPED_TRACE(out);
  EXPECT_NE(out.find("\"done\":true"), std::string::npos) << "the page never finished";
  // WebSocket: opened with permessage-deflate, five echoes all equal to what was sent, and a
  // clean close with the code the page sent.
  EXPECT_NE(out.find("\"open\":true"), std::string::npos);
  EXPECT_NE(out.find("permessage-deflate"), std::string::npos) << "Chromium offers it; we accept";
  std::size_t echoes = 0, pos = 0;
  while ((pos = out.find("\"ok\":true", pos)) != std::string::npos) ++echoes, ++pos;
  EXPECT_EQ(echoes, 5u);
  EXPECT_EQ(out.find("\"ok\":false"), std::string::npos);
  EXPECT_NE(out.find("\"close\":{\"code\":1000,\"reason\":\"\",\"wasClean\":true}"),
            std::string::npos);
  // Server-Sent Events: three events, ids 1, 2, 3.
  EXPECT_NE(out.find("{\"id\":\"1\""), std::string::npos);
  EXPECT_NE(out.find("{\"id\":\"3\""), std::string::npos);
  server.signal(SIGTERM);
  EXPECT_EQ(server.wait(30s), 0) << server.err();
  EXPECT_EQ(test::field(server.out(), "ws_handshakes"), 1) << server.out();
  EXPECT_GE(test::field(server.out(), "ws_compressed_in"), 1)
      << "Chromium compressed at least one message";
  EXPECT_EQ(test::field(server.out(), "ws_protocol_errors"), 0);
}

MYRIAD_CONFORMANCE_SUITE(WsClients);

}  // namespace
