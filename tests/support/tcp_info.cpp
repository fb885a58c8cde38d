// The one place that needs <linux/tcp.h>: glibc's <netinet/tcp.h> has no tcpi_snd_wnd.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

namespace test {

uint32_t tcp_peer_window(int fd) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
      len < offsetof(tcp_info, tcpi_snd_wnd) + sizeof(info.tcpi_snd_wnd)) {
    return UINT32_MAX;
  }
  return info.tcpi_snd_wnd;
}

}  // namespace test
