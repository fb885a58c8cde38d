/*
 * uring_echo.c -- reference TCP echo server: plain C, one thread, liburing 2.3.
 *
 * A deliberately minimal baseline for the myriad benchmarks: the "minimal
 * hand-written io_uring loop". Multishot accept (regular fds), multishot
 * receive from one provided buffer ring, one IORING_OP_SEND per received
 * buffer (one send in flight per connection, so echoed bytes stay in order;
 * a short send sends the rest), the buffer goes back to the ring when its send
 * completes. A receive that ends without IORING_CQE_F_MORE is re-armed; after
 * -ENOBUFS (ring ran dry) it is re-armed once buffers come back. One
 * io_uring_submit_and_wait per loop turn. No SQPOLL, no DEFER_TASKRUN, no
 * fixed files, no registered ring fd: nothing tuned beyond the obvious.
 *
 * usage: ref-uring-echo [--listen HOST:PORT]   (default 127.0.0.1:7100)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define QUEUE_DEPTH 4096 /* SQ entries; the CQ gets 4x */
#define BUF_COUNT 4096   /* provided buffers (power of two) */
#define BUF_SIZE 16384
#define BGID 0

enum { T_ACCEPT = 1, T_RECV, T_SEND, T_LISTEN_POLL }; /* low 3 bits of user_data */

struct conn {
  int fd;
  int head, tail; /* FIFO of buffer ids to echo, linked by next_bid[] */
  unsigned recv_armed : 1, send_busy : 1, eof : 1, dead : 1, starved : 1;
  struct conn* next_starved; /* on the starved list: receive ended with ENOBUFS */
};

static struct io_uring ring;
static struct io_uring_buf_ring* br;
static char* bufs;
static unsigned buf_len[BUF_COUNT], buf_off[BUF_COUNT];
static int next_bid[BUF_COUNT];
static int returned; /* buffers added to the ring, not yet advanced */
static struct conn* starved;
static int lfd, reserve_fd = -1;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void die(const char* what, int err) {
  fprintf(stderr, "%s: %s\n", what, strerror(err));
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
  /* non-blocking only so the EMFILE drain below cannot block */
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0) die("socket", errno);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 4096)) die("bind/listen", errno);
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

static struct io_uring_sqe* get_sqe(void) {
  struct io_uring_sqe* s;
  while (!(s = io_uring_get_sqe(&ring))) io_uring_submit(&ring); /* SQ full: flush it */
  return s;
}

static void give_back(int bid) /* made visible by the advance at the end of the turn */
{
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                        io_uring_buf_ring_mask(BUF_COUNT), returned++);
}

static void arm_accept(void) {
  struct io_uring_sqe* s = get_sqe();
  io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(s, T_ACCEPT);
}

static void arm_recv(struct conn* c) {
  struct io_uring_sqe* s = get_sqe();
  io_uring_prep_recv_multishot(s, c->fd, NULL, 0, 0);
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = BGID;
  io_uring_sqe_set_data64(s, (uintptr_t)c | T_RECV);
  c->recv_armed = 1;
}

static void send_head(struct conn* c) {
  int bid = c->head;
  struct io_uring_sqe* s = get_sqe();
  io_uring_prep_send(s, c->fd, bufs + (size_t)bid * BUF_SIZE + buf_off[bid],
                     buf_len[bid] - buf_off[bid], MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, (uintptr_t)c | T_SEND);
  c->send_busy = 1;
}

/* Close and free once done (EOF or error) and no operation is in flight. */
static void maybe_free(struct conn* c) {
  if (!(c->eof || c->dead) || c->recv_armed || c->send_busy || c->starved) return;
  close(c->fd);
  free(c);
}

/* Error: drop queued data; shutdown() makes an armed receive complete. */
static void kill_conn(struct conn* c) {
  if (!c->dead) shutdown(c->fd, SHUT_RDWR);
  c->dead = 1;
  if (!c->send_busy) {
    for (; c->head >= 0; c->head = next_bid[c->head]) give_back(c->head);
    c->tail = -1;
  }
  maybe_free(c);
}

static void on_accept(struct io_uring_cqe* cqe) {
  int more = cqe->flags & IORING_CQE_F_MORE;
  if (cqe->res == -EMFILE || cqe->res == -ENFILE) {
    /* Out of fds (io_uring says so even with an empty backlog): drop one
     * pending connection with the reserve fd, and wait for the listener to
     * be readable again before re-arming, so the loop does not spin. */
    if (reserve_fd >= 0) {
      close(reserve_fd);
      int fd = accept(lfd, NULL, NULL);
      if (fd >= 0) close(fd);
      reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (!more) {
      struct io_uring_sqe* s = get_sqe();
      io_uring_prep_poll_add(s, lfd, POLLIN);
      io_uring_sqe_set_data64(s, T_LISTEN_POLL);
    }
    return;
  }
  if (!more) arm_accept();
  if (cqe->res < 0) return;
  int one = 1;
  setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct conn* c = calloc(1, sizeof *c);
  if (!c) {
    close(cqe->res);
    return;
  }
  c->fd = cqe->res;
  c->head = c->tail = -1;
  arm_recv(c);
}

static void on_recv(struct conn* c, struct io_uring_cqe* cqe) {
  int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
  if (!(cqe->flags & IORING_CQE_F_MORE)) c->recv_armed = 0;
  if (cqe->res > 0) {
    if (c->dead) {
      give_back(bid);
      maybe_free(c);
    } else {
      buf_len[bid] = cqe->res, buf_off[bid] = 0, next_bid[bid] = -1;
      if (c->tail >= 0)
        next_bid[c->tail] = bid;
      else
        c->head = bid;
      c->tail = bid;
      if (!c->send_busy) send_head(c);
      if (!c->recv_armed) arm_recv(c); /* multishot ended without an error */
    }
    return;
  }
  if (cqe->flags & IORING_CQE_F_BUFFER) give_back(bid);
  if (c->recv_armed) return;
  if (cqe->res == -ENOBUFS && !c->dead) { /* ring dry: re-arm when buffers return */
    c->starved = 1, c->next_starved = starved, starved = c;
  } else if (cqe->res == 0) { /* EOF: finish echoing, then close */
    c->eof = 1;
    maybe_free(c);
  } else {
    kill_conn(c);
  }
}

static void on_send(struct conn* c, struct io_uring_cqe* cqe) {
  int bid = c->head;
  c->send_busy = 0;
  if (cqe->res <= 0 || c->dead) {
    kill_conn(c);
    return;
  }
  if ((buf_off[bid] += cqe->res) < buf_len[bid]) {
    send_head(c);
    return;
  } /* short send */
  c->head = next_bid[bid];
  if (c->head < 0) c->tail = -1;
  give_back(bid);
  if (c->head >= 0)
    send_head(c);
  else
    maybe_free(c);
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
  /* SIGINT/SIGTERM stay blocked except while the loop waits in the kernel
   * (the sigmask argument below), so a signal always interrupts a wait. */
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL);
  sigset_t sigs, waitmask;
  sigemptyset(&sigs), sigaddset(&sigs, SIGINT), sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, &waitmask);
  sigdelset(&waitmask, SIGINT), sigdelset(&waitmask, SIGTERM);

  struct io_uring_params p = {.flags = IORING_SETUP_CQSIZE, .cq_entries = 4 * QUEUE_DEPTH};
  int ret = io_uring_queue_init_params(QUEUE_DEPTH, &ring, &p);
  if (ret < 0) die("io_uring_queue_init", -ret);

  size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
  br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
  if (br == MAP_FAILED || !bufs) die("buffers", ENOMEM);
  struct io_uring_buf_reg reg = {
      .ring_addr = (uintptr_t)br, .ring_entries = BUF_COUNT, .bgid = BGID};
  if ((ret = io_uring_register_buf_ring(&ring, &reg, 0)) < 0)
    die("io_uring_register_buf_ring", -ret);
  io_uring_buf_ring_init(br);
  for (int i = 0; i < BUF_COUNT; i++) give_back(i);
  io_uring_buf_ring_advance(br, returned), returned = 0;

  reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  lfd = open_listener(spec);
  arm_accept();

  struct io_uring_cqe* cqe;
  while (!stop) {
    /* = io_uring_submit_and_wait(&ring, 1), with the signals unblocked while waiting; the
     * 100 ms timeout also re-checks `stop` on an idle server (costs nothing under load) */
    struct __kernel_timespec tick = {.tv_sec = 0, .tv_nsec = 100000000};
    ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &tick, &waitmask);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME)
      die("io_uring_submit_and_wait", -ret);
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      struct conn* c = (struct conn*)(uintptr_t)(cqe->user_data & ~(uint64_t)7);
      switch (cqe->user_data & 7) {
        case T_ACCEPT:
          on_accept(cqe);
          break;
        case T_LISTEN_POLL:
          arm_accept();
          break;
        case T_RECV:
          on_recv(c, cqe);
          break;
        case T_SEND:
          on_send(c, cqe);
          break;
      }
    }
    io_uring_cq_advance(&ring, seen);
    if (returned) { /* publish returned buffers, then re-arm receives that ran dry */
      io_uring_buf_ring_advance(br, returned), returned = 0;
      while (starved) {
        struct conn* c = starved;
        starved = c->next_starved, c->starved = 0;
        if (c->dead)
          maybe_free(c);
        else
          arm_recv(c);
      }
    }
  }
  /* The ring is torn down asynchronously after exit and its armed accept
   * still holds the listener: take it out of LISTEN now so that the port
   * can be bound again at once. */
  shutdown(lfd, SHUT_RDWR);
  return 0;
}
