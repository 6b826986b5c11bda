"""Chardev backends read from -chardev, and the filenames QEMU gives them.

Pins chardev/char-socket.c qemu_chr_parse_socket (server/wait/telnet defaults),
SocketAddress_to_str with "disconnected:" (update_disconnected_filename, also what
tcp_chr_wait_connected prints), sockaddr_to_str (tcp_chr_connect) and
chardev/char.c qemu_chardev_new (a backend without its own filename shows its type);
through the trio edge, the errors of opening a socket chardev.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.chardev.edge import BoundAddress, ChardevError, open_listener
from devices.chardev.model import ChardevSpec, chardev_spec, socket_address_to_str
from vmm.cmdline import parse_command_line


def spec(arg: str) -> ChardevSpec | None:
    (opts,) = parse_command_line(["-nodefaults", "-chardev", arg]).chardevs
    return chardev_spec(opts)


def test_socket_server_defaults_to_wait() -> None:
    """qemu_chr_parse_socket: is_waitconnect = is_listen && wait (default on)."""
    assert spec("socket,id=a,path=/tmp/a,server") == ChardevSpec(
        id="a", backend="socket", path="/tmp/a", server=True, wait=True)
    s = spec("socket,id=a,path=/tmp/a,server,nowait")
    assert s is not None and (s.server, s.wait) == (True, False)


def test_socket_client_never_waits() -> None:
    """qemu_chr_parse_socket: server defaults off; a client has no wait."""
    s = spec("socket,id=c,host=127.0.0.1,port=4444")
    assert s is not None and (s.server, s.wait, s.host, s.port) == (
        False, False, "127.0.0.1", "4444")


def test_socket_inet_flags() -> None:
    """qemu_chr_parse_socket: telnet, ipv4 and ipv6 are read as booleans."""
    s = spec("socket,id=t,host=::1,port=5,server,nowait,telnet,ipv6=on,ipv4=off")
    assert s is not None and (s.telnet, s.ipv6, s.ipv4) == (True, True, False)


def test_backends_without_a_stream() -> None:
    """The stdio backend is a stream from the start; vc, null, ... have none here."""
    assert spec("stdio,id=s") == ChardevSpec(id="s", backend="stdio")
    assert spec("null,id=n") is None


def test_disconnected_filenames() -> None:
    """SocketAddress_to_str("disconnected:", ...): unix, fd, tcp and telnet, with
    ",server" for a listening chardev; qemu_chardev_new: stdio shows "stdio"."""
    assert ChardevSpec(id="a", backend="socket", path="/p").filename() == \
        "disconnected:unix:/p,server"
    assert ChardevSpec(id="a", backend="socket", fd="3").filename() == \
        "disconnected:fd:3,server"
    assert ChardevSpec(id="a", backend="socket", host="", port="4444",
                       server=False).filename() == "disconnected:tcp::4444"
    assert ChardevSpec(id="a", backend="socket", host="h", port="1",
                       telnet=True).filename() == "disconnected:telnet:h:1,server"
    assert ChardevSpec(id="s", backend="stdio").filename() == "stdio"


def test_connected_filenames() -> None:
    """sockaddr_to_str: the local unix path; both inet ends, IPv6 in brackets."""
    unix = ChardevSpec(id="a", backend="socket", path="/p")
    assert unix.connected_filename("/p", "") == "unix:/p,server"
    tcp = ChardevSpec(id="a", backend="socket", host="127.0.0.1", port="4444")
    assert tcp.connected_filename(("127.0.0.1", 4444), ("127.0.0.1", 51000)) == \
        "tcp:127.0.0.1:4444,server <-> 127.0.0.1:51000"
    v6 = ChardevSpec(id="a", backend="socket", host="::1", port="1", server=False,
                     telnet=True)
    assert v6.connected_filename(("::1", 40000, 0, 0), ("::1", 1, 0, 0)) == \
        "telnet:[::1]:40000 <-> [::1]:1"


def test_socket_address_to_str_vsock() -> None:
    """SocketAddress_to_str: a vsock address is "vsock:CID:PORT" and never says
    ",server" (the only case without is_listen's suffix)."""
    assert socket_address_to_str("disconnected:", {"type": "vsock", "cid": "3",
                                                   "port": "9"}, True, False) == \
        "disconnected:vsock:3:9"
    assert socket_address_to_str("", {"type": "inet", "host": "h", "port": "1"},
                                 False, True) == "telnet:h:1"


async def test_fd_that_is_not_a_socket(tmp_path: Path) -> None:
    """fd=N names a descriptor that must be a socket (QEMU 2.12 util/qemu-sockets.c
    socket_get_fd: "File descriptor '%s' is not a socket")."""
    with open(tmp_path / "f", "w") as f:
        with pytest.raises(ChardevError, match=f"^File descriptor '{f.fileno()}' is not "
                           "a socket$"):
            await open_listener(ChardevSpec(id="m", backend="socket", fd=str(f.fileno())))


@pytest.mark.parametrize(("fd", "message"), [
    ("abc", "Unable to parse FD number abc"),
    ("3x", "Unable to parse FD number 3x"),
    ("", "Unable to parse FD number "),
    ("2147483648", "Unable to parse FD number 2147483648: Numerical result out of range"),
])
async def test_fd_that_is_not_a_number(fd: str, message: str) -> None:
    """QEMU 2.12 util/qemu-sockets.c socket_get_fd without a current monitor: the
    whole option by qemu_strtoi (base 10, a C int); errno's text only when strtol set
    one (ERANGE), since a string without digits leaves errno 0."""
    with pytest.raises(ChardevError) as refused:
        await open_listener(ChardevSpec(id="m", backend="socket", fd=fd))
    assert str(refused.value) == message


async def test_unix_bind_failure(tmp_path: Path) -> None:
    """unix_listen_saddr: "Failed to bind socket to PATH" with the errno's text."""
    path = tmp_path / "missing" / "sock"
    with pytest.raises(ChardevError, match=f"^Failed to bind socket to {path}: No such "
                       "file or directory$"):
        await open_listener(ChardevSpec(id="m", backend="socket", path=str(path)))


async def test_listener_reports_its_address(tmp_path: Path) -> None:
    """A bound unix chardev reports its id, family and path (Server's task status)."""
    path = tmp_path / "s"
    listener = await open_listener(ChardevSpec(id="m", backend="socket", path=str(path),
                                               wait=False))
    try:
        assert listener.address() == BoundAddress("m", "unix", str(path))
    finally:
        listener.close()
