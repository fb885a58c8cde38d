/*
 * echo_client_epoll.c -- an independent closed-loop echo load client: plain C, one thread,
 * level-triggered epoll, nothing from myriad.
 *
 * The second client for bench/compare-echo (`--client epoll`), so that no figure depends on
 * one load generator's batching alone. N connections, each keeping --depth messages of --size
 * bytes in flight: a message is sent when the connection opens, and a new one each time one
 * has been echoed in full. Every echoed byte is checked against what was sent (each
 * connection's stream is a fixed pseudo-random pattern, offset per connection). After
 * --warmup, the measured window of --duration opens: messages completed in it, round-trip
 * latency of those messages, and the server's user + system CPU time from /proc/PID/stat at
 * the window's start and end, as myriad-load does. Then it stops sending, waits (up to 5 s)
 * for every message in flight, closes, and writes the same JSON fields as `myriad-load echo
 * --json` (those bench/compare-echo reads).
 *
 * --ws: the same over WebSocket (RFC 6455), for `myriad-server --protocol ws-echo`. Each
 * connection does the opening handshake first (blocking, bounded by 10 s; the 101 must carry
 * the Sec-WebSocket-Accept of the fixed key, RFC 6455 1.3's example), then every message is one
 * binary frame of --size payload bytes, masked as a client must (a fixed non-zero key per
 * connection), and every byte that comes back is compared with the frame the server must send:
 * FIN + binary, no mask bit, the length, the payload unmasked. No extension is offered. A
 * message counts when its whole echoed frame has arrived. The TCP close at the end has no close
 * frame (the server sees 1006).
 *
 * usage: echo-client-epoll [echo] --target HOST:PORT --connections N --size BYTES --depth D
 *          --warmup DUR --duration DUR [--server-pid PID] [--cpu N] [--json FILE] [--quiet]
 *          [--ws]
 * DUR: seconds, or with a unit: 500ms, 5s. Exit status 0 when every connection was
 * established, no byte was corrupt, nothing was lost and no connection was closed by the
 * server; 1 otherwise; 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PATLEN 65521u         /* pattern period (prime, so messages do not line up with it) */
#define CHUNK (64u * 1024u)   /* most bytes one send or recv handles */
#define DRAIN_NS 5000000000LL /* wait for messages in flight after the window */

struct conn {
  int fd;
  unsigned open : 1, want_out : 1;
  uint64_t offset;            /* this connection's start in the pattern */
  unsigned char mask[4];      /* --ws: this connection's masking key */
  uint64_t issued, completed; /* messages */
  uint64_t sent, received;    /* stream bytes */
  int64_t* issued_at;         /* ring of depth timestamps, by message number */
};

static struct conn* conns;
static unsigned char* pat; /* PATLEN + CHUNK bytes: any CHUNK-long stretch is contiguous */
static unsigned char rbuf[CHUNK];
static int ep;
static uint64_t opt_conns = 1, opt_size = 64, opt_depth = 1;
/* Bytes of one message on the wire, out and back: opt_size for raw echo; with --ws, a frame
 * header (+ the 4-byte mask going out) and the payload. */
static uint64_t out_msg, in_msg;
static int opt_ws;
static unsigned char ws_out_hdr[14], ws_in_hdr[10];
static unsigned ws_out_hdr_len, ws_in_hdr_len;
static unsigned char sbuf[CHUNK + 16];
static int traffic, measuring;
static uint64_t corrupt, failed_refused, failed_timeout, failed_other, closed_by_server,
    reset_by_server, bytes_sent, bytes_received, messages_sent, messages_done;
static volatile sig_atomic_t interrupted;

/* Latency histogram: 64 linear buckets per power of two (relative error under 1.6 %). */
#define HBUCKETS (64 * 60)
static uint64_t hist[HBUCKETS], hist_n, hist_max;
static double hist_sum;

static int hbucket(uint64_t v) {
  if (v < 64) return (int)v;
  int m = 63 - __builtin_clzll(v); /* >= 6 */
  int i = (m - 5) * 64 + (int)((v >> (m - 6)) & 63);
  return i < HBUCKETS ? i : HBUCKETS - 1;
}

static double hvalue(int i) { /* middle of bucket i */
  if (i < 64) return i;
  int m = i / 64 + 5, sub = i % 64;
  double lo = (double)((uint64_t)(64 + sub) << (m - 6)), width = (double)(1ull << (m - 6));
  return lo + width / 2;
}

static void hrecord(int64_t ns) {
  uint64_t v = ns > 0 ? (uint64_t)ns : 0;
  hist[hbucket(v)]++, hist_n++, hist_sum += (double)v;
  if (v > hist_max) hist_max = v;
}

static double hpercentile(double p) {
  if (!hist_n) return 0;
  uint64_t want = (uint64_t)(p / 100.0 * (double)hist_n + 0.999999), seen = 0;
  if (want < 1) want = 1;
  for (int i = 0; i < HBUCKETS; i++)
    if ((seen += hist[i]) >= want) return hvalue(i);
  return (double)hist_max;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static void usage(const char* why) {
  fprintf(
      stderr,
      "echo-client-epoll: %s\nusage: echo-client-epoll [echo] --target HOST:PORT --connections N "
      "--size BYTES --depth D --warmup DUR --duration DUR [--server-pid PID] [--cpu N] "
      "[--json FILE] [--quiet] [--ws]\n",
      why);
  exit(2);
}

static int64_t parse_dur(const char* s) {
  char* end;
  double v = strtod(s, &end);
  if (end == s || v < 0) usage("bad duration");
  if (!strcmp(end, "ms")) return (int64_t)(v * 1e6);
  if (!strcmp(end, "s") || !*end) return (int64_t)(v * 1e9);
  usage("bad duration unit (s or ms)");
  return 0;
}

static uint64_t parse_u(const char* s, uint64_t lo, uint64_t hi, const char* what) {
  char* end;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || *end || v < lo || v > hi) usage(what);
  return v;
}

/* utime + stime of a process in ns (tick resolution, as the kernel reports it); -1 if gone. */
static int64_t proc_cpu_ns(int pid) {
  char path[64], text[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  char* p = strrchr(text, ')');
  if (!p) return -1;
  unsigned long long utime = 0, stime = 0;
  /* after ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
   * utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  return (int64_t)((utime + stime) * (1000000000ull / (unsigned long long)(hz > 0 ? hz : 100)));
}

static void set_events(struct conn* c, int out) {
  if (c->want_out == (unsigned)out) return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = (unsigned)out;
}

static void drop(struct conn* c) {
  if (!c->open) return;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->open = 0;
}

/* Hands the kernel every issued byte it will take. */
/* --ws: writes up to `cap` bytes of the connection's outgoing frame stream, from stream byte
 * `pos` on, into sbuf. Message m's payload is the pattern at offset + m * size, as in raw mode. */
static size_t ws_fill(const struct conn* c, uint64_t pos, uint64_t cap) {
  size_t n = 0;
  while (n < cap) {
    uint64_t m = pos / out_msg, off = pos % out_msg, take;
    if (off < ws_out_hdr_len) {
      take = ws_out_hdr_len - off;
      if (take > cap - n) take = cap - n;
      unsigned char h[14];
      memcpy(h, ws_out_hdr, ws_out_hdr_len - 4), memcpy(h + ws_out_hdr_len - 4, c->mask, 4);
      memcpy(sbuf + n, h + off, take);
    } else {
      uint64_t p = off - ws_out_hdr_len; /* payload index: the mask phase is p % 4 */
      take = opt_size - p;
      if (take > cap - n) take = cap - n;
      const unsigned char* src = pat + (c->offset + m * opt_size + p) % PATLEN;
      for (uint64_t k = 0; k < take; k++) sbuf[n + k] = src[k] ^ c->mask[(p + k) & 3];
    }
    n += take, pos += take;
  }
  return n;
}

/* --ws: 1 when the received bytes equal the frames the server must send for them. */
static int ws_check(const struct conn* c, uint64_t pos, const unsigned char* b, size_t len) {
  while (len) {
    uint64_t m = pos / in_msg, off = pos % in_msg, take;
    if (off < ws_in_hdr_len) {
      take = ws_in_hdr_len - off;
      if (take > len) take = len;
      if (memcmp(b, ws_in_hdr + off, take)) return 0;
    } else {
      uint64_t p = off - ws_in_hdr_len;
      take = opt_size - p;
      if (take > len) take = len;
      if (memcmp(b, pat + (c->offset + m * opt_size + p) % PATLEN, take)) return 0;
    }
    b += take, len -= take, pos += take;
  }
  return 1;
}

static void flush(struct conn* c) {
  uint64_t want = c->issued * out_msg;
  while (c->sent < want) {
    uint64_t n = want - c->sent;
    if (n > CHUNK) n = CHUNK;
    const unsigned char* src = pat + (c->offset + c->sent) % PATLEN;
    if (opt_ws) n = ws_fill(c, c->sent, n), src = sbuf;
    ssize_t w = send(c->fd, src, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        set_events(c, 1);
        return;
      }
      if (errno == EINTR) continue;
      if (errno == ECONNRESET || errno == EPIPE)
        reset_by_server++;
      else
        failed_other++;
      drop(c);
      return;
    }
    c->sent += (uint64_t)w, bytes_sent += (uint64_t)w;
  }
  set_events(c, 0);
}

static void issue(struct conn* c, int64_t t) {
  c->issued_at[c->issued % opt_depth] = t;
  c->issued++, messages_sent++;
}

static void on_readable(struct conn* c, int64_t t) {
  ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (r == 0)
      closed_by_server++;
    else if (errno == ECONNRESET)
      reset_by_server++;
    else
      failed_other++;
    drop(c);
    return;
  }
  if (opt_ws ? (uint64_t)r > c->issued * in_msg - c->received ||
                   !ws_check(c, c->received, rbuf, (size_t)r)
             : (uint64_t)r > c->sent - c->received ||
                   memcmp(rbuf, pat + (c->offset + c->received) % PATLEN, (size_t)r) != 0)
    corrupt++;
  c->received += (uint64_t)r, bytes_received += (uint64_t)r;
  while ((c->completed + 1) * in_msg <= c->received && c->completed < c->issued) {
    if (measuring) {
      hrecord(t - c->issued_at[c->completed % opt_depth]);
      messages_done++;
    }
    c->completed++;
    if (traffic) issue(c, t);
  }
  flush(c);
}

/* Runs the loop until `until` (monotonic ns); stop early when drain is set and nothing is in
 * flight. */
static void run_until(int64_t until, int drain) {
  struct epoll_event evs[512];
  for (;;) {
    int64_t t = now_ns();
    if (t >= until || interrupted) return;
    if (drain) {
      int busy = 0;
      for (uint64_t i = 0; i < opt_conns && !busy; i++)
        busy = conns[i].open && conns[i].completed < conns[i].issued;
      if (!busy) return;
    }
    int64_t wait_ms = (until - t + 999999) / 1000000;
    if (wait_ms > 100) wait_ms = 100;
    int n = epoll_wait(ep, evs, 512, (int)wait_ms);
    if (n < 0 && errno != EINTR) {
      perror("epoll_wait");
      exit(1);
    }
    t = now_ns();
    for (int i = 0; i < n; i++) {
      struct conn* c = evs[i].data.ptr;
      if (!c->open) continue;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, t);
      if (c->open && (evs[i].events & EPOLLOUT)) flush(c);
    }
  }
}

/* --ws: the opening handshake on a blocking socket (RFC 6455 4.1). 0 when the server answered
 * 101 with the right Sec-WebSocket-Accept and nothing after the head; -1 otherwise (printed). */
static int ws_handshake(int fd, const char* host) {
  char req[512], resp[2048];
  int n =
      snprintf(req, sizeof req,
               "GET /bench HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
               host);
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) return -1;
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  size_t got = 0;
  char* end = NULL;
  while (!end) {
    if (got == sizeof resp - 1) break;
    ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
    if (r <= 0) break;
    got += (size_t)r, resp[got] = 0;
    end = strstr(resp, "\r\n\r\n");
  }
  tv.tv_sec = 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  /* The accept value of RFC 6455 1.3's example key. */
  const char* accept = end ? strcasestr(resp, "\r\nSec-WebSocket-Accept:") : NULL;
  if (accept) accept += strlen("\r\nSec-WebSocket-Accept:") + strspn(accept + 23, " \t");
  if (!end || strncmp(resp, "HTTP/1.1 101", 12) || !accept ||
      strncmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", 30) || (size_t)(end + 4 - resp) != got) {
    static int printed;
    if (!printed++)
      fprintf(stderr, "echo-client-epoll: WebSocket handshake failed: %.200s\n",
              got ? resp : "(no answer)");
    return -1;
  }
  return 0;
}

int main(int argc, char** argv) {
  const char *target = NULL, *json_path = NULL;
  int64_t warmup = 1000000000LL, duration = 5000000000LL;
  int server_pid = 0, cpu = -1, quiet = 0;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (i == 1 && !strcmp(a, "echo")) continue;
    if (!strcmp(a, "--quiet")) {
      quiet = 1;
      continue;
    }
    if (!strcmp(a, "--ws")) {
      opt_ws = 1;
      continue;
    }
    if (!v) usage("missing value");
    i++;
    if (!strcmp(a, "--target"))
      target = v;
    else if (!strcmp(a, "--connections"))
      opt_conns = parse_u(v, 1, 1000000, "bad --connections");
    else if (!strcmp(a, "--size"))
      opt_size = parse_u(v, 1, 1u << 20, "bad --size");
    else if (!strcmp(a, "--depth"))
      opt_depth = parse_u(v, 1, 1024, "bad --depth");
    else if (!strcmp(a, "--warmup"))
      warmup = parse_dur(v);
    else if (!strcmp(a, "--duration"))
      duration = parse_dur(v);
    else if (!strcmp(a, "--server-pid"))
      server_pid = (int)parse_u(v, 1, 1u << 30, "bad --server-pid");
    else if (!strcmp(a, "--cpu"))
      cpu = (int)parse_u(v, 0, CPU_SETSIZE - 1, "bad --cpu");
    else if (!strcmp(a, "--json"))
      json_path = v;
    else
      usage("unknown option");
  }
  if (!target) usage("--target is required");
  if (duration <= 0) usage("--duration must be positive");
  out_msg = in_msg = opt_size;
  if (opt_ws) { /* RFC 6455 5.2: FIN + opcode 2 (binary); 7, 16 or 64-bit length; mask bit out */
    unsigned char len[9];
    unsigned ll;
    if (opt_size <= 125)
      len[0] = (unsigned char)opt_size, ll = 1;
    else if (opt_size <= 65535)
      len[0] = 126, len[1] = (unsigned char)(opt_size >> 8), len[2] = (unsigned char)opt_size,
      ll = 3;
    else {
      len[0] = 127, ll = 9;
      for (int k = 0; k < 8; k++) len[1 + k] = (unsigned char)(opt_size >> (56 - 8 * k));
    }
    ws_in_hdr[0] = ws_out_hdr[0] = 0x82;
    memcpy(ws_in_hdr + 1, len, ll), memcpy(ws_out_hdr + 1, len, ll);
    ws_out_hdr[1] |= 0x80;
    ws_in_hdr_len = 1 + ll, ws_out_hdr_len = 1 + ll + 4; /* the key goes in per connection */
    out_msg = ws_out_hdr_len + opt_size, in_msg = ws_in_hdr_len + opt_size;
  }

  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set)) {
      perror("sched_setaffinity");
      return 1;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL);
  struct rlimit rl;
  if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  char host[256];
  snprintf(host, sizeof host, "%s", target);
  char* colon = strrchr(host, ':');
  if (!colon) usage("--target must be HOST:PORT");
  *colon = 0;
  char *h = host, *port = colon + 1;
  if (*h == '[') h++, h[strlen(h) - 1] = 0;
  struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM},
                  *ai;
  if (getaddrinfo(h, port, &hints, &ai)) usage("bad --target");

  pat = malloc(PATLEN + CHUNK);
  conns = calloc(opt_conns, sizeof *conns);
  if (!pat || !conns) return 1;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (unsigned i = 0; i < PATLEN; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    pat[i] = (unsigned char)(x >> 24);
  }
  for (unsigned i = PATLEN; i < PATLEN + CHUNK; i++) pat[i] = pat[i - PATLEN]; /* periodic */
  ep = epoll_create1(EPOLL_CLOEXEC);

  /* ---- Connect: blocking connects one after the other, each bounded by 10 s ---- */
  int64_t t_connect = now_ns();
  uint64_t established = 0;
  for (uint64_t i = 0; i < opt_conns && !interrupted; i++) {
    struct conn* c = &conns[i];
    c->offset = (i * 7919u) % PATLEN;
    for (int k = 0; k < 4; k++)
      c->mask[k] = (unsigned char)(0x5b + 37 * k + i * 11) | 1u; /* non-zero */
    c->issued_at = calloc(opt_depth, sizeof *c->issued_at);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || !c->issued_at) {
      failed_other++;
      if (fd >= 0) close(fd);
      continue;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen)) {
      int e = errno;
      if (e == ECONNREFUSED)
        failed_refused++;
      else if (e == EINPROGRESS || e == ETIMEDOUT || e == EAGAIN)
        failed_timeout++;
      else
        failed_other++;
      close(fd);
      continue;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt_ws && ws_handshake(fd, target)) {
      failed_other++;
      close(fd);
      continue;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->fd = fd, c->open = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    established++;
  }
  double establish_s = (double)(now_ns() - t_connect) / 1e9;
  freeaddrinfo(ai);

  /* ---- Traffic: warm-up, then the measured window, then drain ---- */
  traffic = 1;
  int64_t t = now_ns();
  for (uint64_t i = 0; i < opt_conns; i++) {
    struct conn* c = &conns[i];
    if (!c->open) continue;
    for (uint64_t d = 0; d < opt_depth; d++) issue(c, t);
    flush(c);
  }
  run_until(now_ns() + warmup, 0);
  int64_t cpu0 = server_pid ? proc_cpu_ns(server_pid) : -1;
  int64_t w0 = now_ns();
  measuring = 1;
  run_until(w0 + duration, 0);
  measuring = 0;
  int64_t w1 = now_ns();
  int64_t cpu1 = server_pid ? proc_cpu_ns(server_pid) : -1;
  traffic = 0;
  run_until(now_ns() + DRAIN_NS, 1);
  uint64_t lost = 0;
  for (uint64_t i = 0; i < opt_conns; i++) {
    struct conn* c = &conns[i];
    if (c->open) lost += c->issued - c->completed;
    drop(c);
  }

  double window_s = (double)(w1 - w0) / 1e9;
  double mps = (double)messages_done / window_s;
  int ok = established == opt_conns && !corrupt && !lost && !closed_by_server && !reset_by_server &&
           !failed_other && !interrupted && messages_done > 0;
  double server_cpu_s = cpu0 >= 0 && cpu1 >= 0 ? (double)(cpu1 - cpu0) / 1e9 : -1;
  if (!quiet || !ok) {
    fprintf(stderr,
            "echo-client-epoll: %llu/%llu connections in %.2f s; %llu messages in %.2f s (%.0f/s); "
            "corrupt %llu, lost %llu, closed by the server %llu, reset %llu%s\n",
            (unsigned long long)established, (unsigned long long)opt_conns, establish_s,
            (unsigned long long)messages_done, window_s, mps, (unsigned long long)corrupt,
            (unsigned long long)lost, (unsigned long long)closed_by_server,
            (unsigned long long)reset_by_server, interrupted ? "; INTERRUPTED" : "");
    if (server_cpu_s >= 0 && messages_done)
      fprintf(stderr, "echo-client-epoll: server pid %d: %.3f s CPU = %.0f ns per message\n",
              server_pid, server_cpu_s, server_cpu_s * 1e9 / (double)messages_done);
  }
  if (json_path) {
    FILE* f = fopen(json_path, "w");
    if (!f) {
      perror(json_path);
      return 1;
    }
    fprintf(f,
            "{\n  \"mode\": \"%s\",\n  \"client\": \"echo-client-epoll\",\n"
            "  \"connections\": %llu,\n  \"size\": %llu,\n  \"depth\": %llu,\n"
            "  \"warmup_s\": %.6f,\n  \"duration_s\": %.6f,\n  \"established\": %llu,\n"
            "  \"establish_s\": %.6f,\n  \"establish_per_s\": %.1f,\n",
            opt_ws ? "ws-echo" : "echo", (unsigned long long)opt_conns,
            (unsigned long long)opt_size, (unsigned long long)opt_depth, (double)warmup / 1e9,
            (double)duration / 1e9, (unsigned long long)established, establish_s,
            (double)established / (establish_s > 1e-9 ? establish_s : 1e-9));
    fprintf(
        f,
        "  \"failed\": {\"refused\": %llu, \"timed_out\": %llu, \"reset\": %llu, \"no_port\": 0, "
        "\"other\": %llu, \"closed_while_held\": %llu},\n",
        (unsigned long long)failed_refused, (unsigned long long)failed_timeout,
        (unsigned long long)reset_by_server, (unsigned long long)failed_other,
        (unsigned long long)closed_by_server);
    fprintf(f,
            "  \"corrupt\": %llu,\n  \"bytes_sent\": %llu,\n  \"bytes_received\": %llu,\n"
            "  \"messages_sent\": %llu,\n  \"window_s\": %.6f,\n  \"messages\": %llu,\n"
            "  \"messages_per_s\": %.2f,\n  \"mb_per_s\": %.4f,\n",
            (unsigned long long)corrupt, (unsigned long long)bytes_sent,
            (unsigned long long)bytes_received, (unsigned long long)messages_sent, window_s,
            (unsigned long long)messages_done, mps, mps * (double)opt_size / 1e6);
    fprintf(f,
            "  \"latency_us\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
            "\"max\": %.3f, \"mean\": %.3f},\n  \"lost_messages\": %llu,\n",
            hpercentile(50) / 1e3, hpercentile(90) / 1e3, hpercentile(99) / 1e3,
            hpercentile(99.9) / 1e3, (double)hist_max / 1e3,
            hist_n ? hist_sum / (double)hist_n / 1e3 : 0.0, (unsigned long long)lost);
    if (server_cpu_s >= 0 && messages_done)
      fprintf(f, "  \"server_cpu_s\": %.6f,\n  \"server_cpu_ns_per_message\": %.3f,\n",
              server_cpu_s, server_cpu_s * 1e9 / (double)messages_done);
    fprintf(f, "  \"ok\": %d,\n  \"interrupted\": %d\n}\n", ok, interrupted ? 1 : 0);
    fclose(f);
  }
  return ok ? 0 : 1;
}
