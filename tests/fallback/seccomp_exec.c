/* seccomp_exec: runs a program with io_uring_setup denied by a seccomp filter, as Docker's
 * default profile does (EPERM), or with another errno to stand for an io_uring that fails for
 * some other reason. Usage: seccomp_exec [--errno N] PROGRAM [ARGS...]
 * The filter is per process: nothing on the machine changes. */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int error = EPERM;
  int first = 1;
  if (argc > 2 && strcmp(argv[1], "--errno") == 0) {
    error = atoi(argv[2]);
    first = 3;
  }
  if (argc <= first || error <= 0) {
    fprintf(stderr, "usage: seccomp_exec [--errno N] PROGRAM [ARGS...]\n");
    return 2;
  }
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == NULL) return 2;
  int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((unsigned)error),
                            seccomp_syscall_resolve_name("io_uring_setup"), 0);
  if (rc == 0) rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) {
    fprintf(stderr, "seccomp_exec: cannot install the filter: %s\n", strerror(-rc));
    return 2;
  }
  execvp(argv[first], argv + first);
  fprintf(stderr, "seccomp_exec: %s: %s\n", argv[first], strerror(errno));
  return 127;
}
