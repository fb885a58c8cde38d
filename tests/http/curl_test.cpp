// myriad-server --protocol http driven by curl, a client no one here wrote: fixed responses,
// keep-alive, static files with their content types, path traversal refused, and SSE with
// `curl -N` (ids resumed from Last-Event-ID). On both backends.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "client.hpp"
#include "process.hpp"

namespace {

using namespace std::chrono_literals;
using test::BackendTest;

const char* curl_path() {
  for (const char* p : {"/usr/bin/curl", "/usr/local/bin/curl"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return nullptr;
}

class CurlTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped()) return;
    if (curl_path() == nullptr) {
      GTEST_SKIP() << "curl is not installed (scripts/deps.sh installs it): the curl half of "
                      "the HTTP tests does not run";
    }
    root_ = std::filesystem::temp_directory_path() /
            ("myriad-curl-" + std::to_string(::getpid()) + "-" + test::param_name({GetParam(), 0}));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "www" / "sub");
    write("www/index.html", "<!doctype html><title>t</title>");
    write("www/app.js", "console.log(1)");
    write("www/sub/style.css", "body{}");
    write("www/data.json", "{\"a\":1}");
    write("www/note.txt", "plain");
    write("www/pic.png", std::string("\x89PNG\r\n\x1a\n", 8) + std::string(300000, 'p'));
    write("secret.txt", "do not serve");
    std::filesystem::create_symlink(root_ / "secret.txt", root_ / "www" / "link.txt");

    server_ = std::make_unique<test::Process>(std::vector<std::string>{
        MYRIAD_SERVER_BIN, "--protocol", "http", "--listen", "127.0.0.1:0", "--shards", "1",
        "--backend", GetParam() == myriad::BackendKind::kUring ? "uring" : "epoll", "--static",
        (root_ / "www").string(), "--sse-interval", "100ms"});
    std::string line = server_->read_line();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, std::regex("on 127\\.0\\.0\\.1:([0-9]+)"))) << line;
    base_ = "http://127.0.0.1:" + m[1].str();
  }
  void TearDown() override {
    if (server_) {
      server_->signal(SIGTERM);
      EXPECT_EQ(server_->wait(), 0) << server_->err();
    }
    if (!root_.empty()) std::filesystem::remove_all(root_);
  }
  void write(const std::string& rel, const std::string& content) {
    std::ofstream(root_ / rel, std::ios::binary) << content;
  }
  // Runs curl with args; returns its stdout.
  std::string curl(std::vector<std::string> args, int* code = nullptr) {
    args.insert(args.begin(), {curl_path(), "-s", "--max-time", "10"});
    test::Process p(args);
    int rc = p.wait(30s);
    if (code != nullptr) {
      *code = rc;
    } else {
      EXPECT_EQ(rc, 0) << "curl " << args.back() << ": " << p.err();
    }
    return p.out();
  }

  std::filesystem::path root_;
  std::unique_ptr<test::Process> server_;
  std::string base_;
};

TEST_P(CurlTest, FixedResponsesAndKeepAlive) {
  EXPECT_EQ(curl({base_ + "/healthz"}), "ok\n");
  EXPECT_EQ(curl({base_ + "/hello"}), "Hello, world!\n");
  // Two URLs in one curl: the second reuses the connection (num_connects 0).
  std::string out =
      curl({"-w", "[%{http_code} %{num_connects}]", base_ + "/hello", base_ + "/healthz"});
  EXPECT_EQ(out, "Hello, world!\n[200 1]ok\n[200 0]");
  std::string head = curl({"-I", base_ + "/hello"});
  EXPECT_NE(head.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Content-Length: 14\r\n"), std::string::npos) << head;
  // curl's own chunked upload.
  std::string posted = curl({"-w", "%{http_code}", "-H", "Transfer-Encoding: chunked",
                             "--data-binary", "some body", base_ + "/hello"});
  EXPECT_EQ(posted, "Hello, world!\n200");
}

TEST_P(CurlTest, StaticFilesWithTheirContentTypes) {
  struct File {
    std::string path, type;
  };
  for (const File& f :
       {File{"/", "text/html; charset=utf-8"}, File{"/index.html", "text/html; charset=utf-8"},
        File{"/app.js", "text/javascript; charset=utf-8"},
        File{"/sub/style.css", "text/css; charset=utf-8"}, File{"/data.json", "application/json"},
        File{"/note.txt", "text/plain; charset=utf-8"}, File{"/pic.png", "image/png"}}) {
    std::string out =
        curl({"-o", "/dev/null", "-w", "%{http_code} %{content_type}", base_ + f.path});
    EXPECT_EQ(out, "200 " + f.type) << f.path;
  }
  // The large file streams as the socket drains; every byte arrives.
  std::string png = curl({base_ + "/pic.png"});
  EXPECT_EQ(png.size(), 300008u);
  EXPECT_EQ(png.substr(0, 4), "\x89PNG");
  EXPECT_EQ(curl({"-w", "%{http_code}", "-o", "/dev/null", base_ + "/missing.txt"}), "404");
}

TEST_P(CurlTest, PathTraversalIsRefused) {
  for (const char* path : {"/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt",
                           "/sub/%2E%2E/%2e%2e/secret.txt", "/link.txt", "/%00"}) {
    std::string out = curl({"--path-as-is", "-w", " %{http_code}", base_ + path});
    EXPECT_EQ(out.find("do not serve"), std::string::npos) << path;
    EXPECT_TRUE(out.ends_with(" 403") || out.ends_with(" 400")) << path << ": " << out;
  }
}

TEST_P(CurlTest, ServerSentEventsWithCurlN) {
  int code = 0;
  // --max-time ends the endless stream (curl exits 28 then).
  std::string out = curl({"-N", "--max-time", "1", base_ + "/sse/clock"}, &code);
  EXPECT_EQ(code, 28) << out;
  std::regex event("id: ([0-9]+)\nevent: tick\ndata: [0-9T:Z-]+\n\n");
  std::vector<int> ids;
  for (auto it = std::sregex_iterator(out.begin(), out.end(), event); it != std::sregex_iterator();
       ++it) {
    ids.push_back(std::stoi((*it)[1].str()));
  }
  ASSERT_GE(ids.size(), 2u) << out;
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], static_cast<int>(i) + 1);
  // A reconnecting client resumes after the id it saw.
  std::string resumed =
      curl({"-N", "--max-time", "1", "-H", "Last-Event-ID: 41", base_ + "/sse/clock"}, &code);
  EXPECT_EQ(resumed.rfind("id: 42\nevent: tick\n", 0), 0u) << resumed;
  std::string headers =
      curl({"-N", "--max-time", "1", "-D", "-", "-o", "/dev/null", base_ + "/sse/clock"}, &code);
  EXPECT_NE(headers.find("Content-Type: text/event-stream\r\n"), std::string::npos) << headers;
}

MYRIAD_CONFORMANCE_SUITE(CurlTest);

}  // namespace
