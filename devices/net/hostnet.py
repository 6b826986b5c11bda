"""The host side of netdevs: real sockets, passed descriptors, the bridge helper.

Synchronous I/O edge of `devices.net` (no trio): `HostNet` is the `NetHost` the pure
model (`devices.net.model`) asks to open things, as QEMU 2.11's backends do
[net/socket.c net_socket_listen_init, net_socket_connect_init; slirp/socket.c
tcp_listen/udp_listen for host forwarding; net/tap.c net_bridge_run_helper,
tap-linux.c tap_open; net/l2tpv3.c]. Errors raise `GenericError` with QEMU's text.
The emulator never creates host network interfaces: `open_tun` opens /dev/net/tun
and answers as QEMU does without CAP_NET_ADMIN.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess

from schema.errors import GenericError

PATH_NET_TUN = "/dev/net/tun"
IPPROTO_L2TP = 115


class SocketHandle:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def close(self) -> None:
        self.sock.close()


class FdHandle:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _strerror(err: OSError) -> str:
    return os.strerror(err.errno or 0)


class HostNet:
    """Opens what netdevs open on this host."""

    def socket_listen(self, host: str, port: int) -> SocketHandle:
        """net_socket_listen_init: bind and listen (backlog 0)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        try:
            sock.bind((host, port))
        except OSError as err:
            sock.close()
            raise GenericError(f"can't bind ip={host} to socket: {_strerror(err)}") from None
        sock.listen(0)
        return SocketHandle(sock)

    def socket_connect(self, host: str, port: int) -> SocketHandle:
        """net_socket_connect_init: a non-blocking connect; only an immediate failure
        other than EINPROGRESS is an error."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS, errno.EALREADY, errno.EINVAL,
                        errno.EWOULDBLOCK):
            sock.close()
            raise GenericError(f"can't connect socket: {os.strerror(code)}")
        return SocketHandle(sock)

    def hostfwd_listen(self, udp: bool, host: str, port: int) -> SocketHandle | None:
        """slirp's tcp_listen/udp_listen: None when the host port cannot be taken."""
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host or "0.0.0.0", port))
            if not udp:
                sock.listen(1)
        except OSError:
            sock.close()
            return None
        return SocketHandle(sock)

    def adopt_fd(self, fd: int) -> FdHandle:
        return FdHandle(fd)

    def run_bridge_helper(self, helper: str, bridge: str) -> FdHandle:
        """net_bridge_run_helper: the helper gets one end of a socketpair as --fd and
        sends the tap descriptor back; a helper that cannot run exits 1, and since
        recv_fd returns 0 on an empty read, the error is "bridge helper failed"."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd_arg = f"--fd={theirs.fileno()}"
        br_arg = f"--br={bridge}"
        if " " in helper or "\t" in helper:
            args = ["/bin/sh", "-c", f"{helper} --use-vnet {fd_arg} {br_arg}"
                    if "--br=" not in helper else f"{helper} --use-vnet {fd_arg}"]
        else:
            args = [helper, "--use-vnet", fd_arg, br_arg]
        try:
            proc = subprocess.Popen(args, pass_fds=(theirs.fileno(),),
                                    stdin=subprocess.DEVNULL)
        except OSError:
            proc = None
        theirs.close()
        fds: list[int] = []
        try:
            _msg, fds, _flags, _addr = socket.recv_fds(ours, 1, 1)
        except OSError:
            pass
        ours.close()
        status = proc.wait() if proc is not None else 1
        if not fds or status != 0:
            for fd in fds:
                os.close(fd)
            raise GenericError("bridge helper failed")
        return FdHandle(fds[0])

    def open_tun(self, ifname: str) -> None:
        """tap_open: /dev/net/tun opens (or not, with QEMU's text); TUNSETIFF then
        needs CAP_NET_ADMIN, which the emulator never uses."""
        try:
            fd = os.open(PATH_NET_TUN, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise GenericError(f"could not open {PATH_NET_TUN}: {_strerror(err)}") from None
        os.close(fd)
        where = f" ({ifname})" if ifname else ""
        raise GenericError(f"could not configure {PATH_NET_TUN}{where}: "
                           f"{os.strerror(errno.EPERM)}")

    def l2tpv3_open(self, ipv6: bool, udp: bool, src: str, srcport: str | None, dst: str,
                    dstport: str | None) -> SocketHandle:
        """net_init_l2tpv3's socket: resolve src, bind, resolve dst; the OSError's
        text is what QEMU prints."""
        family = socket.AF_INET6 if ipv6 else socket.AF_INET
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_RAW
        proto = 0 if udp else IPPROTO_L2TP
        try:
            local = socket.getaddrinfo(src, srcport, family, kind, proto)[0][4]
        except socket.gaierror as err:
            raise OSError(f"l2tpv3_open : could not resolve src, errno = {err.strerror}") \
                from None
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as err:
            raise OSError(f"l2tpv3_open : socket creation failed, errno = {err.errno}") \
                from None
        try:
            sock.bind(local)
        except OSError as err:
            sock.close()
            raise OSError(f"l2tpv3_open :  could not bind socket err={err.errno}") from None
        try:
            socket.getaddrinfo(dst, dstport, family, kind, proto)
        except socket.gaierror as err:
            sock.close()
            raise OSError(f"l2tpv3_open : could not resolve dst, error = {err.strerror}") \
                from None
        return SocketHandle(sock)
