/*
 * libuv_echo.c -- reference TCP echo server: libuv, one thread, one uv loop.
 *
 * A deliberately minimal baseline for the myriad benchmarks, written the way
 * an experienced libuv user would: the alloc callback hands out one static
 * read buffer (the loop is single-threaded and read_cb consumes it at once),
 * read_cb echoes with uv_try_write and only copies what the socket did not take
 * into a uv_write (libuv keeps the order: uv_try_write refuses while writes are
 * queued); on EOF, uv_shutdown lets queued writes finish before the close.
 *
 * usage: ref-libuv-echo [--listen HOST:PORT]   (default 127.0.0.1:7100)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct write_req {
  uv_write_t req;
  uv_buf_t buf;
};

static uv_loop_t* loop;

static char read_buffer[65536];

static void alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  (void)h;
  (void)suggested;
  buf->base = read_buffer;
  buf->len = sizeof read_buffer;
}

static void close_cb(uv_handle_t* h) {
  free(h);
}

static void shutdown_cb(uv_shutdown_t* req, int status) {
  (void)status;
  if (!uv_is_closing((uv_handle_t*)req->handle)) uv_close((uv_handle_t*)req->handle, close_cb);
  free(req);
}

static void write_cb(uv_write_t* req, int status) {
  struct write_req* w = (struct write_req*)req;
  uv_handle_t* h = (uv_handle_t*)req->handle;
  free(w->buf.base);
  free(w);
  if (status < 0 && !uv_is_closing(h)) uv_close(h, close_cb);
}

static void read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  if (n > 0) {
    uv_buf_t data = uv_buf_init(buf->base, (unsigned)n);
    int sent = uv_try_write(s, &data, 1);
    if (sent == n) return;
    if (sent < 0 && sent != UV_EAGAIN) {
      if (!uv_is_closing((uv_handle_t*)s)) uv_close((uv_handle_t*)s, close_cb);
      return;
    }
    size_t done = sent > 0 ? (size_t)sent : 0;
    struct write_req* w = malloc(sizeof *w);
    char* rest = malloc((size_t)n - done);
    if (w && rest) {
      memcpy(rest, buf->base + done, (size_t)n - done);
      w->buf = uv_buf_init(rest, (unsigned)((size_t)n - done));
      if (uv_write(&w->req, s, &w->buf, 1, write_cb) == 0) return;
    }
    free(rest);
    free(w);
    if (!uv_is_closing((uv_handle_t*)s)) uv_close((uv_handle_t*)s, close_cb);
    return;
  }
  if (n == UV_EOF) { /* finish the queued writes, then close */
    uv_shutdown_t* req = malloc(sizeof *req);
    if (req && uv_shutdown(req, s, shutdown_cb) == 0) return;
    free(req);
  }
  if (n < 0 && !uv_is_closing((uv_handle_t*)s)) uv_close((uv_handle_t*)s, close_cb); /* error */
}

static void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return; /* libuv itself drains EMFILE with a reserve fd */
  uv_tcp_t* c = malloc(sizeof *c);
  if (!c) return;
  uv_tcp_init(loop, c);
  if (uv_accept(server, (uv_stream_t*)c) == 0) {
    uv_tcp_nodelay(c, 1);
    uv_read_start((uv_stream_t*)c, alloc_cb, read_cb);
  } else {
    uv_close((uv_handle_t*)c, close_cb);
  }
}

static void on_signal(uv_signal_t* h, int signum) {
  (void)signum;
  uv_stop(h->loop);
}

int main(int argc, char** argv) {
  const char* spec = "127.0.0.1:7100";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--listen") && i + 1 < argc)
      spec = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--listen HOST:PORT]\n", argv[0]);
      return 2;
    }
  }
  char host[256], *colon;
  snprintf(host, sizeof host, "%s", spec);
  if (!(colon = strrchr(host, ':'))) {
    fprintf(stderr, "bad --listen %s\n", spec);
    return 2;
  }
  *colon = 0;
  char* h = host;
  char* end;
  long port = strtol(colon + 1, &end, 10);
  if (*h == '[') {
    h++;
    h[strlen(h) - 1] = 0;
  }
  if (!colon[1] || *end || port < 0 || port > 65535) {
    fprintf(stderr, "bad --listen %s\n", spec);
    return 2;
  }

  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  struct sockaddr_storage addr;
  if (uv_ip4_addr(h, (int)port, (struct sockaddr_in*)&addr) &&
      uv_ip6_addr(h, (int)port, (struct sockaddr_in6*)&addr)) {
    fprintf(stderr, "bad --listen %s\n", spec);
    return 2;
  }
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  int r = uv_tcp_bind(&server, (struct sockaddr*)&addr, 0); /* libuv sets SO_REUSEADDR */
  if (!r) r = uv_listen((uv_stream_t*)&server, 4096, on_connection);
  if (r) {
    fprintf(stderr, "listen %s: %s\n", spec, uv_strerror(r));
    return 1;
  }

  uv_signal_t sigint, sigterm;
  uv_signal_init(loop, &sigint), uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_init(loop, &sigterm), uv_signal_start(&sigterm, on_signal, SIGTERM);

  struct sockaddr_storage ss;
  int len = sizeof ss;
  char name[64];
  uv_tcp_getsockname(&server, (struct sockaddr*)&ss, &len);
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6*)&ss, name, sizeof name);
    printf("listening on [%s]:%d\n", name, ntohs(((struct sockaddr_in6*)&ss)->sin6_port));
  } else {
    uv_ip4_name((struct sockaddr_in*)&ss, name, sizeof name);
    printf("listening on %s:%d\n", name, ntohs(((struct sockaddr_in*)&ss)->sin_port));
  }
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
