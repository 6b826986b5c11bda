"""The host side of chardevs: real files, pipes, ptys, sockets and serial devices.

Synchronous I/O edge of `devices.chardev` (no trio): `open_host(ident, kind, data)` is
the `HostOpener` the pure model (`devices.chardev.model.Chardevs`) calls when a
chardev is created, and opens what QEMU 2.11 opens at that moment [chardev/char-file.c,
char-pipe.c, char-pty.c, char-serial.c, char-parallel.c, char-udp.c, char-stdio.c,
char-socket.c qmp_chardev_open_socket; util/qemu-sockets.c]: a server socket is bound
and listening, a client socket connected (or, with `reconnect`, left to retry), a pty
allocated. Every descriptor is non-blocking; the trio edge (`devices.chardev.edge`)
waits until one is readable and calls back. Writes that the host side cannot take
at once are dropped, as QEMU drops output of a chardev nobody reads. Errors raise
`GenericError` with QEMU's message.
"""

from __future__ import annotations

import errno
import os
import pty
import socket
import termios
import tty
from typing import Any

from devices.chardev.model import sockaddr_to_str, socket_address_to_str
from schema.errors import GenericError
from schema.opts.sockets import inet_ai_family, socket_address_flatten

RECV_SIZE = 4096
TELNET_INIT = b"\xff\xfb\x01\xff\xfb\x03\xff\xfb\x00\xff\xfd\x00"  # tcp_chr_telnet_init
TN3270_INIT = (b"\xff\xfd\x19\xff\xfb\x19\xff\xfd\x00\xff\xfb\x00\xff\xfd\x18"
               b"\xff\xfa\x18\x01\xff\xf0")
IAC = 0xFF


def _file_open_error(path: str, err: OSError) -> GenericError:
    """error_setg_file_open."""
    return GenericError(f"Could not open '{path}': {os.strerror(err.errno or 0)}")


def _open(path: str, flags: int) -> int:
    """qmp_chardev_open_file_source: qemu_open with mode 0666."""
    try:
        return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise _file_open_error(path, err) from None


def _write_nonblocking(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except (BlockingIOError, BrokenPipeError, OSError):
        pass  # nobody takes it: QEMU's fd chardevs lose it too


def _read(fd: int) -> bytes | None:
    try:
        return os.read(fd, RECV_SIZE)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class FdIO:
    """file, pipe, serial, parallel, stdio: one descriptor to write, one to read
    (qemu_chr_open_fd)."""

    def __init__(self, fd_in: int | None, fd_out: int | None, *, owned: bool = True) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.owned = owned
        self.eof = False

    def filename(self) -> str:
        return ""

    def connected(self) -> bool:
        return True

    def write(self, data: bytes) -> None:
        if self.fd_out is not None:
            _write_nonblocking(self.fd_out, data)

    def read_fds(self) -> tuple[int, ...]:
        return () if self.fd_in is None or self.eof else (self.fd_in,)

    def readable(self, fd: int) -> tuple[bytes | None, str | None]:
        data = _read(fd)
        if data == b"":
            self.eof = True  # fd_chr_read: end of input removes the read watch
            return None, None
        return data, None

    def retry(self) -> bool:
        return True

    def close(self) -> None:
        if not self.owned:
            return
        for fd in {self.fd_in, self.fd_out} - {None}:
            assert fd is not None
            os.close(fd)


class PtyIO(FdIO):
    """char-pty.c: a real pseudo-terminal in raw mode; its slave path is the filename
    ("pty:/dev/pts/N"). The emulator keeps a descriptor of the slave open, so output
    written before a user opens the path is waiting there for them."""

    def __init__(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave, termios.TCSANOW)
        os.set_blocking(master, False)
        os.set_inheritable(master, False)
        os.set_inheritable(slave, False)
        self.path = os.ttyname(slave)
        self.slave = slave
        super().__init__(master, master)

    def filename(self) -> str:
        return f"pty:{self.path}"

    def readable(self, fd: int) -> tuple[bytes | None, str | None]:
        data = _read(fd)
        return (data or None), None

    def close(self) -> None:
        super().close()
        os.close(self.slave)


class SocketIO:
    """char-socket.c: a listening socket that takes one client at a time, or a client
    socket; telnet negotiation and IAC stripping."""

    def __init__(self, data: dict[str, Any]) -> None:
        # qmp_chardev_open_socket keeps the address flattened
        self.addr = socket_address_flatten(data["addr"])
        self.kind = self.addr["type"]
        self.server = bool(data.get("server", True))
        self.telnet = bool(data.get("telnet", False))
        self.tn3270 = bool(data.get("tn3270", False))
        self.nodelay = bool(data.get("nodelay", False))
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None
        self.conn_name = ""
        self.host = ""
        self.port = ""
        self.iac = b""

    # -- QEMU's filenames ---------------------------------------------------------------

    def filename(self) -> str:
        if self.conn is None:
            # update_disconnected_filename; an inet listener shows its bound port
            addr = self.addr
            if self.kind == "inet":
                addr = {**addr, "host": self.host, "port": self.port}
            return socket_address_to_str("disconnected:", addr, self.server, self.telnet)
        return self.conn_name

    def connected(self) -> bool:
        return self.conn is not None

    # -- opening ------------------------------------------------------------------------

    def open(self, *, reconnect: bool = False) -> None:
        """Listen, or connect; a client with `reconnect` tries once now (QEMU's
        asynchronous connect) and, failing, stays disconnected without an error."""
        if self.kind == "inet":
            self.host = str(self.addr.get("host", ""))
            self.port = str(self.addr.get("port", ""))
        if reconnect:
            self.connect()
            return
        if self.server:
            self._listen()
        elif not self.connect():
            raise self.connect_error

    def _listen(self) -> None:
        if self.kind == "unix":
            path = str(self.addr["path"])
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                os.unlink(path)  # unix_listen_saddr
            except FileNotFoundError:
                pass
            except OSError as err:
                sock.close()
                raise GenericError(f"Failed to unlink socket {path}: "
                                   f"{os.strerror(err.errno or 0)}") from None
            try:
                sock.bind(path)
            except OSError as err:
                sock.close()
                raise GenericError(f"Failed to bind socket to {path}: "
                                   f"{os.strerror(err.errno or 0)}") from None
        elif self.kind == "inet":
            sock = self._inet_listen()
        else:
            raise GenericError(f"socket family {self.kind} unsupported")
        sock.listen(1)
        sock.setblocking(False)
        self.listener = sock

    def _inet_listen(self) -> socket.socket:
        """inet_listen_saddr: getaddrinfo, then bind each address; an address in use
        moves on, and when none is left: "Failed to find an available port"."""
        try:
            family = inet_ai_family(self.host, self.addr.get("ipv4"), self.addr.get("ipv6"))
            infos = socket.getaddrinfo(self.host or None, self.port or None, family,
                                       socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as err:
            raise GenericError(f"address resolution failed for {self.host}:{self.port}: "
                               f"{err.strerror}") from None
        last = 0
        for family, kind, proto, _canon, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as err:
                sock.close()
                if err.errno != errno.EADDRINUSE:
                    raise GenericError("Failed to bind socket: "
                                       f"{os.strerror(err.errno or 0)}") from None
                last = err.errno
                continue
            # socket_local_address: the filename shows the bound port
            local = sock.getsockname()
            self.host, self.port = str(local[0]), str(local[1])
            return sock
        raise GenericError(f"Failed to find an available port: {os.strerror(last)}")

    connect_error = GenericError("Failed to connect socket")

    def connect(self) -> bool:
        """socket_connect: unix_connect_saddr / inet_connect_saddr, synchronously."""
        if self.kind == "unix":
            path = str(self.addr["path"])
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = path
        else:
            try:
                family = inet_ai_family(self.host, self.addr.get("ipv4"),
                                        self.addr.get("ipv6"))
                infos = socket.getaddrinfo(self.host, self.port, family, socket.SOCK_STREAM)
            except GenericError as err:
                self.connect_error = err
                return False
            except socket.gaierror as err:
                self.connect_error = GenericError(
                    f"address resolution failed for {self.host}:{self.port}: {err.strerror}")
                return False
            family, kind, proto, _canon, target = infos[0]
            sock = socket.socket(family, kind, proto)
        try:
            sock.connect(target)
        except OSError as err:
            sock.close()
            text = os.strerror(err.errno or 0)
            where = f" {target}" if self.kind == "unix" else ""
            self.connect_error = GenericError(f"Failed to connect socket{where}: {text}")
            return False
        self._connected(sock)
        return True

    def _connected(self, sock: socket.socket) -> None:
        """tcp_chr_new_client / tcp_chr_connect: the filename names both ends."""
        sock.setblocking(False)
        if self.nodelay and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = sock
        remote = sock.getpeername() if sock.family != socket.AF_UNIX else ""
        self.conn_name = sockaddr_to_str(sock.getsockname(), remote, self.server,
                                         self.telnet)
        if self.server and (self.telnet or self.tn3270):
            self.write(TN3270_INIT if self.tn3270 else TELNET_INIT)

    # -- I/O ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.conn is None:
            return  # tcp_chr_write: not connected, the bytes are dropped
        try:
            self.conn.send(data)
        except OSError:
            pass

    def read_fds(self) -> tuple[int, ...]:
        if self.conn is not None:
            return (self.conn.fileno(),)
        if self.listener is not None:
            return (self.listener.fileno(),)
        return ()

    def readable(self, fd: int) -> tuple[bytes | None, str | None]:
        if self.conn is None:
            assert self.listener is not None
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return None, None
            self._connected(sock)
            return None, "opened"
        try:
            data = self.conn.recv(RECV_SIZE)
        except BlockingIOError:
            return None, None
        except OSError:
            data = b""
        if not data:
            self.conn.close()  # tcp_chr_disconnect; a server listens again
            self.conn = None
            return None, "closed"
        if self.telnet or self.tn3270:
            data = self._strip_iac(data)
        return data or None, None

    def _strip_iac(self, data: bytes) -> bytes:
        """tcp_chr_process_IAC_bytes: telnet commands (IAC x y) are not data; IAC IAC
        is one 0xff."""
        buf = self.iac + data
        out = bytearray()
        i = 0
        while i < len(buf):
            if buf[i] != IAC:
                out.append(buf[i])
                i += 1
                continue
            if i + 1 >= len(buf):
                break
            if buf[i + 1] == IAC:
                out.append(IAC)
                i += 2
                continue
            if i + 2 >= len(buf):
                break
            i += 3
        self.iac = bytes(buf[i:])
        return bytes(out)

    def retry(self) -> bool:
        return self.connect()

    def close(self) -> None:
        for sock in (self.conn, self.listener):
            if sock is not None:
                sock.close()
        self.conn = self.listener = None


class UdpIO(FdIO):
    """char-udp.c: a datagram socket bound to `local` and connected to `remote`."""

    def __init__(self, data: dict[str, Any]) -> None:
        # qmp_chardev_open_udp flattens both addresses
        remote = socket_address_flatten(data["remote"])
        local = socket_address_flatten(data["local"]) if data.get("local") else {}
        family = inet_ai_family(remote.get("host"), remote.get("ipv4"), remote.get("ipv6"))
        try:
            infos = socket.getaddrinfo(remote.get("host"), remote.get("port"), family,
                                       socket.SOCK_DGRAM)
        except socket.gaierror as err:
            raise GenericError(f"address resolution failed for {remote.get('host')}:"
                               f"{remote.get('port')}: {err.strerror}") from None
        family, kind, proto, _canon, target = infos[0]
        self.sock = socket.socket(family, kind, proto)
        try:
            self.sock.bind((local.get("host") or "", int(local.get("port") or 0)))
        except OSError as err:
            self.sock.close()
            raise GenericError(f"Failed to bind socket: {os.strerror(err.errno or 0)}") \
                from None
        try:
            self.sock.connect(target)
        except OSError as err:
            self.sock.close()
            raise GenericError(f"Failed to connect socket: {os.strerror(err.errno or 0)}") \
                from None
        self.sock.setblocking(False)
        super().__init__(self.sock.fileno(), self.sock.fileno(), owned=False)

    def readable(self, fd: int) -> tuple[bytes | None, str | None]:
        try:
            return self.sock.recv(RECV_SIZE) or None, None
        except OSError:
            return None, None

    def close(self) -> None:
        self.sock.close()


def open_host(ident: str, kind: str, data: dict[str, Any]) -> Any:
    """The `HostOpener` of `devices.chardev.model.Chardevs`: the host side of a new
    chardev of backend `kind`, or None for those without one."""
    if kind == "file":
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if data.get("append") else os.O_TRUNC)
        out = _open(data["out"], flags)
        fd_in = None
        if data.get("in"):
            try:
                fd_in = _open(data["in"], os.O_RDONLY)
            except GenericError:
                os.close(out)
                raise
        return FdIO(fd_in, out)
    if kind == "pipe":
        path = data["device"]
        try:
            fd_in = _open(f"{path}.in", os.O_RDWR)
        except GenericError:
            fd_in = -1
        try:
            fd_out = _open(f"{path}.out", os.O_RDWR)
        except GenericError:
            fd_out = -1
        if fd_in >= 0 and fd_out >= 0:
            return FdIO(fd_in, fd_out)
        for fd in (fd_in, fd_out):
            if fd >= 0:
                os.close(fd)
        fd = _open(path, os.O_RDWR)
        return FdIO(fd, fd)
    if kind in ("serial", "tty"):
        fd = _open(data["device"], os.O_RDWR)
        return FdIO(fd, fd)
    if kind in ("parallel", "parport"):
        fd = _open(data["device"], os.O_RDWR)
        os.close(fd)  # qemu_chr_open_pp_fd: ioctl(PPCLAIM) needs a parport device
        raise GenericError(f"not a parallel port: {os.strerror(errno.ENOTTY)}")
    if kind == "pty":
        return PtyIO()
    if kind == "stdio":
        return FdIO(0, 1, owned=False)
    if kind == "udp":
        return UdpIO(data)
    if kind == "socket":
        if data.get("tls-creds") is not None:
            # No -object tls-creds-* exists in this emulator: object_resolve_path_component
            # finds nothing.
            raise GenericError(f"No TLS credentials with id '{data['tls-creds']}'")
        io = SocketIO(data)
        io.open(reconnect=not io.server and data.get("reconnect", 0) > 0)
        return io
    return None
