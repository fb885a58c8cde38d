/*
 * epoll_echo.c -- reference TCP echo server: plain C, one thread, one epoll loop.
 *
 * A deliberately minimal baseline for the myriad benchmarks, written the way a
 * competent engineer writes a small hand-rolled epoll server: non-blocking
 * sockets, level-triggered epoll, accept4 in a loop, one read into a 64 KiB
 * static buffer per readiness event, written straight back. Bytes the kernel
 * will not take yet go into a per-connection heap buffer; that connection then
 * waits for EPOLLOUT and is not read until the buffer is empty. A reserve fd
 * keeps EMFILE from spinning the loop. Nothing else is tuned.
 *
 * usage: ref-epoll-echo [--listen HOST:PORT]   (default 127.0.0.1:7100)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
  int fd;
  char* pend;      /* unsent bytes (heap), NULL when none */
  size_t off, len; /* pend[off..len) still to send */
};

static char buf[64 * 1024];
static int ep, lfd, sfd, reserve_fd = -1;
static struct conn listen_tag, signal_tag; /* epoll tags for the two special fds */

static void die(const char* what) {
  perror(what);
  exit(1);
}

/* Parse HOST:PORT ([v6]:PORT allowed), bind, listen, print "listening on ...". */
static int open_listener(const char* spec) {
  char host[256], *colon;
  snprintf(host, sizeof host, "%s", spec);
  if (!(colon = strrchr(host, ':'))) {
    fprintf(stderr, "bad --listen %s\n", spec);
    exit(2);
  }
  *colon = 0;
  char *h = host, *port = colon + 1;
  if (*h == '[') {
    h++;
    h[strlen(h) - 1] = 0;
  }
  char* end;
  long pn = strtol(port, &end, 10);
  if (!*port || *end || pn < 0 || pn > 65535) {
    fprintf(stderr, "bad --listen %s\n", spec);
    exit(2);
  }
  struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
                           .ai_socktype = SOCK_STREAM},
                  *ai;
  if (getaddrinfo(h, port, &hints, &ai)) {
    fprintf(stderr, "bad --listen %s\n", spec);
    exit(2);
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0) die("socket");
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 4096)) die("bind/listen");
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char hb[NI_MAXHOST], pb[NI_MAXSERV];
  getsockname(fd, (struct sockaddr*)&ss, &sl);
  getnameinfo((struct sockaddr*)&ss, sl, hb, sizeof hb, pb, sizeof pb,
              NI_NUMERICHOST | NI_NUMERICSERV);
  printf(ss.ss_family == AF_INET6 ? "listening on [%s]:%s\n" : "listening on %s:%s\n", hb, pb);
  fflush(stdout);
  freeaddrinfo(ai);
  return fd;
}

static void close_conn(struct conn* c) {
  close(c->fd); /* also removes it from the epoll set */
  free(c->pend);
  free(c);
}

/* Send buf[0..n); keep what the kernel does not take. 0 = ok, -1 = connection dead. */
static int send_or_keep(struct conn* c, const char* p, size_t n) {
  ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
  if (w < 0) {
    if (errno != EAGAIN && errno != EINTR) return -1;
    w = 0;
  }
  if ((size_t)w == n) return 0;
  if (!(c->pend = malloc(n - w))) return -1;
  memcpy(c->pend, p + w, n - w);
  c->off = 0, c->len = n - w;
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c}; /* stop reading */
  return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writable again: flush the kept bytes; when all gone, go back to reading. */
static int flush_pending(struct conn* c) {
  while (c->off < c->len) {
    ssize_t w = send(c->fd, c->pend + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (w < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    c->off += w;
  }
  free(c->pend), c->pend = NULL;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void accept_all(void) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
    if (fd < 0) {
      if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0) {
        /* Out of fds: use the reserve to take the connection off the
         * backlog and drop it, instead of spinning on a ready listener.
         * (accept4 says EMFILE even when the backlog is empty.) */
        close(reserve_fd);
        fd = accept(lfd, NULL, NULL);
        if (fd >= 0) close(fd);
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) continue;
        return;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN, or nothing more we can do this turn */
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn* c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) close_conn(c);
  }
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
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs), sigaddset(&sigs, SIGINT), sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL);
  if ((sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) die("signalfd");
  if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
  reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  lfd = open_listener(spec);

  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  ev.data.ptr = &signal_tag;
  epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);

  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      struct conn* c = evs[i].data.ptr;
      if (c == &signal_tag) return 0; /* SIGINT or SIGTERM */
      if (c == &listen_tag) {
        accept_all();
        continue;
      }
      if (c->pend) { /* waiting for EPOLLOUT (or an error) */
        if (flush_pending(c)) close_conn(c);
        continue;
      }
      ssize_t r = recv(c->fd, buf, sizeof buf, 0);
      if (r > 0) {
        if (send_or_keep(c, buf, r)) close_conn(c);
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_conn(c); /* EOF or error */
      }
    }
  }
}
