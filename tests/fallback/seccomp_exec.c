/* seccomp_exec: runs a program with io_uring_setup denied by a seccomp filter (EPERM), as
 * Docker's default profile does. Usage: seccomp_exec PROGRAM [ARGS...]
 * The filter is per process: nothing on the machine changes. */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: seccomp_exec PROGRAM [ARGS...]\n");
    return 2;
  }
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == NULL) return 2;
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM),
                            seccomp_syscall_resolve_name("io_uring_setup"), 0);
  if (rc == 0) rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) {
    fprintf(stderr, "seccomp_exec: cannot install the filter: %s\n", strerror(-rc));
    return 2;
  }
  execvp(argv[1], argv + 1);
  fprintf(stderr, "seccomp_exec: %s: %s\n", argv[1], strerror(errno));
  return 127;
}
