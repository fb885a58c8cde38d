/*
 * uring_echo_tuned.c -- reference TCP echo server: plain C, one thread, liburing 2.3,
 * with the io_uring features myriad uses, written as an experienced user would.
 *
 * The fair comparison for myriad's io_uring backend: uring_echo.c is the minimal loop, this
 * one has everything myriad's loop has that makes io_uring cheap:
 *   - IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN (completions run in one batch
 *     when the loop asks for them, never as task work interrupting the thread), falling back
 *     to IORING_SETUP_COOP_TASKRUN, then to no flags, on EINVAL; IORING_SETUP_SUBMIT_ALL;
 *   - direct (fixed) descriptors: a sparse fixed-file table, filled by a multishot accept
 *     straight into it (no descriptor in the process table, no fget/fput per operation);
 *   - a registered ring fd (io_uring_enter skips the ring's own fget/fput);
 *   - multishot receive on the fixed descriptor from one provided buffer ring;
 *   - batched submission: one io_uring_submit_and_wait per loop turn, sends issued at the end
 *     of the turn, so every buffer a connection received in one turn leaves in one send
 *     (IORING_OP_SEND for one buffer, IORING_OP_SENDMSG with an iovec for several);
 *   - zero copy: the received buffer is what is sent, and goes back to the ring when the send
 *     completes (one send in flight per connection, so echoed bytes stay in order).
 * TCP_NODELAY is set on the listener (accepted sockets inherit it), since a direct descriptor
 * has no fd for setsockopt.
 *
 * usage: ref-uring-tuned-echo [--listen HOST:PORT]   (default 127.0.0.1:7100)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define QUEUE_DEPTH 4096 /* SQ entries; the CQ gets 4x */
#define BUF_COUNT 4096   /* provided buffers (power of two): 64 MiB, like myriad's pool */
#define BUF_SIZE 16384
#define BGID 0
#define MAX_IOV 64      /* buffers per send */
#define MAX_SLOTS 65536 /* fixed-file table, capped by RLIMIT_NOFILE */

enum { T_ACCEPT = 1, T_RECV, T_SEND, T_CLOSE, T_SHUTDOWN }; /* low 8 bits of user_data */

struct conn {
  int head, tail; /* FIFO of buffer ids to echo, linked by next_bid[] */
  int in_flight;  /* buffers covered by the send in flight */
  unsigned open : 1, recv_armed : 1, send_busy : 1, eof : 1, dead : 1, starved : 1, dirty : 1;
  int next_starved; /* slot lists: receive ended with ENOBUFS / has data to send this turn */
  int next_dirty;
  struct msghdr msg;
  struct iovec iov[MAX_IOV];
};

static struct io_uring ring;
static struct io_uring_buf_ring* br;
static char* bufs;
static unsigned buf_len[BUF_COUNT], buf_off[BUF_COUNT];
static int next_bid[BUF_COUNT];
static int returned; /* buffers added to the ring, not yet published */
static struct conn* conns;
static unsigned nslots;
static int starved = -1, dirty = -1;
static int lfd;
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void die(const char* what, int err) {
  fprintf(stderr, "%s: %s\n", what, strerror(err));
  exit(1);
}

/* Parse HOST:PORT ([v6]:PORT allowed), bind, listen. */
static int open_listener(const char* spec, char* shown, size_t shown_len) {
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
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0) die("socket", errno);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* inherited by accepted sockets */
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 4096)) die("bind/listen", errno);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char hb[NI_MAXHOST], pb[NI_MAXSERV];
  getsockname(fd, (struct sockaddr*)&ss, &sl);
  getnameinfo((struct sockaddr*)&ss, sl, hb, sizeof hb, pb, sizeof pb,
              NI_NUMERICHOST | NI_NUMERICSERV);
  snprintf(shown, shown_len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hb, pb);
  freeaddrinfo(ai);
  return fd;
}

static struct io_uring_sqe* get_sqe(void) {
  struct io_uring_sqe* s;
  while (!(s = io_uring_get_sqe(&ring))) io_uring_submit(&ring); /* SQ full: flush it */
  return s;
}

static void give_back(int bid) /* published by the advance at the end of the turn */
{
  io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                        io_uring_buf_ring_mask(BUF_COUNT), returned++);
}

static uint64_t tag(unsigned slot, unsigned type) {
  return ((uint64_t)slot << 8) | type;
}

static void arm_accept(void) {
  struct io_uring_sqe* s = get_sqe();
  io_uring_prep_multishot_accept_direct(s, lfd, NULL, NULL, 0);
  io_uring_sqe_set_data64(s, T_ACCEPT);
}

static void arm_recv(unsigned slot) {
  struct io_uring_sqe* s = get_sqe();
  io_uring_prep_recv_multishot(s, (int)slot, NULL, 0, 0);
  s->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
  s->buf_group = BGID;
  io_uring_sqe_set_data64(s, tag(slot, T_RECV));
  conns[slot].recv_armed = 1;
}

static void mark_dirty(unsigned slot) {
  struct conn* c = &conns[slot];
  if (c->dirty) return;
  c->dirty = 1, c->next_dirty = dirty, dirty = (int)slot;
}

/* Sends every queued buffer (up to MAX_IOV) in one operation. */
static void send_queued(unsigned slot) {
  struct conn* c = &conns[slot];
  struct io_uring_sqe* s = get_sqe();
  int n = 0;
  for (int bid = c->head; bid >= 0 && n < MAX_IOV; bid = next_bid[bid], n++) {
    c->iov[n].iov_base = bufs + (size_t)bid * BUF_SIZE + buf_off[bid];
    c->iov[n].iov_len = buf_len[bid] - buf_off[bid];
  }
  if (n == 1) {
    io_uring_prep_send(s, (int)slot, c->iov[0].iov_base, c->iov[0].iov_len, MSG_NOSIGNAL);
  } else {
    memset(&c->msg, 0, sizeof c->msg);
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = (size_t)n;
    io_uring_prep_sendmsg(s, (int)slot, &c->msg, MSG_NOSIGNAL);
  }
  s->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(s, tag(slot, T_SEND));
  c->send_busy = 1, c->in_flight = n;
}

/* Close once done (EOF or error) and no operation is in flight. */
static void maybe_close(unsigned slot) {
  struct conn* c = &conns[slot];
  if (!c->open || !(c->eof || c->dead) || c->recv_armed || c->send_busy || c->starved ||
      (c->eof && !c->dead && c->head >= 0))
    return;
  for (; c->head >= 0; c->head = next_bid[c->head]) give_back(c->head);
  c->tail = -1;
  c->open = 0;
  struct io_uring_sqe* s = get_sqe();
  io_uring_prep_close_direct(s, slot);
  io_uring_sqe_set_data64(s, tag(slot, T_CLOSE));
}

/* Error: drop queued data; a shutdown makes an armed receive complete. */
static void kill_conn(unsigned slot) {
  struct conn* c = &conns[slot];
  if (!c->dead && c->recv_armed) {
    struct io_uring_sqe* s = get_sqe();
    io_uring_prep_shutdown(s, (int)slot, SHUT_RDWR);
    s->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(s, tag(slot, T_SHUTDOWN));
  }
  c->dead = 1;
  if (!c->send_busy) {
    for (; c->head >= 0; c->head = next_bid[c->head]) give_back(c->head);
    c->tail = -1;
  }
  maybe_close(slot);
}

static void on_accept(struct io_uring_cqe* cqe) {
  /* -ENFILE: the table is full; the kernel has closed that connection. Re-arm either way. */
  if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept();
  if (cqe->res < 0) return;
  unsigned slot = (unsigned)cqe->res;
  if (slot >= nslots) return; /* cannot happen: the kernel allocates inside the table */
  struct conn* c = &conns[slot];
  memset(c, 0, sizeof *c);
  c->head = c->tail = -1;
  c->open = 1;
  arm_recv(slot);
}

static void on_recv(unsigned slot, struct io_uring_cqe* cqe) {
  struct conn* c = &conns[slot];
  int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
  if (!(cqe->flags & IORING_CQE_F_MORE)) c->recv_armed = 0;
  if (cqe->res > 0) {
    if (c->dead) {
      give_back(bid);
      maybe_close(slot);
      return;
    }
    buf_len[bid] = (unsigned)cqe->res, buf_off[bid] = 0, next_bid[bid] = -1;
    if (c->tail >= 0)
      next_bid[c->tail] = bid;
    else
      c->head = bid;
    c->tail = bid;
    mark_dirty(slot);
    if (!c->recv_armed) arm_recv(slot); /* multishot ended without an error */
    return;
  }
  if (cqe->flags & IORING_CQE_F_BUFFER) give_back(bid);
  if (c->recv_armed) return;
  if (cqe->res == -ENOBUFS && !c->dead && !c->eof) { /* ring dry: re-arm when buffers return */
    c->starved = 1, c->next_starved = starved, starved = (int)slot;
  } else if (cqe->res == 0 && !c->dead) { /* EOF: finish echoing, then close */
    c->eof = 1;
    maybe_close(slot);
  } else {
    kill_conn(slot);
  }
}

static void on_send(unsigned slot, struct io_uring_cqe* cqe) {
  struct conn* c = &conns[slot];
  c->send_busy = 0;
  if (cqe->res <= 0 || c->dead) {
    kill_conn(slot);
    return;
  }
  unsigned sent = (unsigned)cqe->res;
  for (int i = 0; i < c->in_flight && c->head >= 0; i++) {
    int bid = c->head;
    unsigned left = buf_len[bid] - buf_off[bid];
    if (sent < left) { /* short send: the rest goes in the next one */
      buf_off[bid] += sent;
      break;
    }
    sent -= left;
    c->head = next_bid[bid];
    give_back(bid);
  }
  if (c->head < 0) c->tail = -1;
  if (c->head >= 0)
    mark_dirty(slot);
  else
    maybe_close(slot);
}

static unsigned table_size(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return 1024;
  if (rl.rlim_cur < rl.rlim_max) { /* the table is capped by the soft limit */
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  rlim_t n = rl.rlim_cur > MAX_SLOTS ? MAX_SLOTS : rl.rlim_cur;
  return n > 64 ? (unsigned)n - 64 : (unsigned)n; /* room for the process's own fds */
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

  /* Newest setup first; an older kernel rejects flags it does not know with EINVAL. */
  static const struct {
    unsigned flags;
    const char* name;
  } setups[] = {
      {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
       "SINGLE_ISSUER DEFER_TASKRUN"},
      {IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "COOP_TASKRUN"},
      {0, "no setup flags"},
  };
  const char* setup = NULL;
  int ret = -EINVAL;
  for (size_t i = 0; i < sizeof setups / sizeof setups[0] && ret == -EINVAL; i++) {
    struct io_uring_params p = {.flags = setups[i].flags | IORING_SETUP_CQSIZE,
                                .cq_entries = 4 * QUEUE_DEPTH};
    ret = io_uring_queue_init_params(QUEUE_DEPTH, &ring, &p);
    setup = setups[i].name;
  }
  if (ret < 0) die("io_uring_queue_init", -ret);
  int reg_ring = io_uring_register_ring_fd(&ring) == 1;

  nslots = table_size();
  if ((ret = io_uring_register_files_sparse(&ring, nslots)) < 0)
    die("io_uring_register_files_sparse", -ret);
  conns = calloc(nslots, sizeof *conns);

  size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
  br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
  if (br == MAP_FAILED || !bufs || !conns) die("buffers", ENOMEM);
  struct io_uring_buf_reg reg = {
      .ring_addr = (uintptr_t)br, .ring_entries = BUF_COUNT, .bgid = BGID};
  if ((ret = io_uring_register_buf_ring(&ring, &reg, 0)) < 0)
    die("io_uring_register_buf_ring", -ret);
  io_uring_buf_ring_init(br);
  for (int i = 0; i < BUF_COUNT; i++) give_back(i);
  io_uring_buf_ring_advance(br, returned), returned = 0;

  char shown[NI_MAXHOST + NI_MAXSERV + 4];
  lfd = open_listener(spec, shown, sizeof shown);
  printf("listening on %s (io_uring: %s, %u direct descriptors, %s)\n", shown, setup, nslots,
         reg_ring ? "registered ring fd" : "ring fd not registered");
  fflush(stdout);
  arm_accept();

  struct io_uring_cqe* cqe;
  while (!stop) {
    /* Submits the turn's operations and waits for one completion; with DEFER_TASKRUN this is
     * also where the kernel runs the completions' work, all at once. The 100 ms timeout
     * re-checks `stop` on an idle server (costs nothing under load). */
    struct __kernel_timespec tick = {.tv_sec = 0, .tv_nsec = 100000000};
    ret = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &tick, &waitmask);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME)
      die("io_uring_submit_and_wait", -ret);
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      unsigned slot = (unsigned)(cqe->user_data >> 8);
      switch (cqe->user_data & 0xff) {
        case T_ACCEPT:
          on_accept(cqe);
          break;
        case T_RECV:
          on_recv(slot, cqe);
          break;
        case T_SEND:
          on_send(slot, cqe);
          break;
        default: /* T_CLOSE, T_SHUTDOWN: nothing to do */
          break;
      }
    }
    io_uring_cq_advance(&ring, seen);
    /* This turn's sends: everything a connection received goes back in one operation. */
    while (dirty >= 0) {
      unsigned slot = (unsigned)dirty;
      struct conn* c = &conns[slot];
      dirty = c->next_dirty, c->dirty = 0;
      if (c->open && !c->dead && !c->send_busy && c->head >= 0) send_queued(slot);
    }
    if (returned) { /* publish returned buffers, then re-arm receives that ran dry */
      io_uring_buf_ring_advance(br, returned), returned = 0;
      while (starved >= 0) {
        unsigned slot = (unsigned)starved;
        struct conn* c = &conns[slot];
        starved = c->next_starved, c->starved = 0;
        if (c->dead)
          maybe_close(slot);
        else
          arm_recv(slot);
      }
    }
  }
  /* The ring is torn down asynchronously after exit and its armed accept still holds the
   * listener: take it out of LISTEN now so that the port can be bound again at once. */
  shutdown(lfd, SHUT_RDWR);
  return 0;
}
