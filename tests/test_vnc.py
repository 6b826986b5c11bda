"""The VNC server over real sockets, and the display commands' errors.

Pins QEMU 2.11's ui/vnc.c (vnc_display_open and vnc_display_get_address with their
errors, vnc_connect / vnc_disconnect_finish with VNC_CONNECTED, VNC_INITIALIZED and
VNC_DISCONNECTED, qmp_query_vnc, qmp_query_vnc_servers, vnc_display_add_client),
qmp.c (qmp_set_password, qmp_expire_password, qmp_add_client), ui/spice-core.c and
include/ui/qemu-spice.h (SPICE compiled in, not in use), monitor.c
qmp_client_migrate_info, and hmp.c hmp_info_vnc; reference:
`devices.md` §9.1, §9.2, §11. The viewer is vncdotool's `vncdo` (PyPI, Twisted),
run as a subprocess so that its reactor does not meet trio.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from devices.display.des import vnc_response
from tests.conftest import VmHarness
from vmm.cmdline import CommandLineError

VNCDO = shutil.which("vncdo") or str(Path(sys.executable).with_name("vncdo"))
needs_vncdo = pytest.mark.skipif(not os.path.exists(VNCDO), reason="vncdotool not installed")


def error(tvm: VmHarness, name: str, arguments: dict[str, Any] | None = None) -> tuple[str, str]:
    reply = tvm.talk().execute(name, arguments)
    return reply["error"]["class"], reply["error"]["desc"]


def ok(tvm: VmHarness, name: str, arguments: dict[str, Any] | None = None) -> Any:
    reply = tvm.talk().execute(name, arguments)
    assert "return" in reply, reply
    return reply["return"]


class Events:
    """The VNC events of a machine, and query-vnc as it was when each arrived."""

    def __init__(self, tvm: VmHarness) -> None:
        self.tvm = tvm
        self.names: list[str] = []
        self.data: list[dict[str, Any]] = []
        self.queried: list[dict[str, Any]] = []
        self.disconnected = trio.Event()
        tvm.machine.events.subscribe(self._sink)

    def _sink(self, event: Any) -> None:
        if not event.name.startswith("VNC_"):
            return
        self.names.append(event.name)
        self.data.append(event.data)
        self.queried.append(self.tvm.vm.display.vnc().query_vnc())
        if event.name == "VNC_DISCONNECTED":
            self.disconnected.set()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def vncdo(*args: str) -> trio.CompletedProcess[bytes]:
    with trio.fail_after(120):  # a watchdog for a hung viewer, not a timing assertion
        return await trio.run_process([VNCDO, "-t", "60", *args], check=False,
                                      capture_stdout=True, capture_stderr=True)


# -- real viewers -------------------------------------------------------------------------


@needs_vncdo
async def test_vncdo_captures_the_screen_on_a_unix_socket(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """A real viewer connects without a password and captures the 640x480 console;
    while it is initialized query-vnc lists it; the three events carry the server
    (with its auth) and the client."""
    path = tmp_path / "vnc.sock"
    tvm = vm_cmdline("-S", "-vnc", f"unix:{path}")
    events = Events(tvm)
    shot = tmp_path / "shot.png"
    result = await vncdo("-s", str(path), "capture", str(shot))
    assert result.returncode == 0, result.stderr
    await events.disconnected.wait()
    assert png_size(shot) == (640, 480)
    assert events.names == ["VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED"]
    server = {"host": "", "service": str(path), "family": "unix", "websocket": False,
              "auth": "none"}
    client = {"host": "", "service": "", "family": "unix", "websocket": False}
    assert events.data == [{"server": server, "client": client}] * 3
    assert events.queried[1] == {"enabled": True, "host": "", "service": str(path),
                                 "family": "unix", "auth": "none", "clients": [client]}
    assert ok(tvm, "query-vnc")["clients"] == []


@needs_vncdo
async def test_vncdo_with_the_password_over_tcp(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """`-vnc 127.0.0.1:0,to=99,password`: the first free port from 5900 (inet_listen_saddr),
    VNC authentication with the password set_password gave; a wrong password is
    refused (connected, then disconnected, never initialized)."""
    tvm = vm_cmdline("-S", "-vnc", "127.0.0.1:0,to=99,password")
    info = ok(tvm, "query-vnc")
    assert (info["host"], info["family"], info["auth"]) == ("127.0.0.1", "ipv4", "vnc")
    port = int(info["service"])
    assert 5900 <= port <= 5999
    assert ok(tvm, "set_password", {"protocol": "vnc", "password": "s3cret"}) == {}
    events = Events(tvm)
    shot = tmp_path / "shot.png"
    result = await vncdo("-s", f"127.0.0.1::{port}", "-p", "s3cret", "capture", str(shot))
    assert result.returncode == 0, result.stderr
    await events.disconnected.wait()
    assert png_size(shot) == (640, 480)
    assert events.names == ["VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED"]
    client = events.data[1]["client"]
    assert (client["host"], client["family"]) == ("127.0.0.1", "ipv4")
    assert events.queried[1]["clients"] == [client]
    assert events.data[0]["server"] == {"host": "127.0.0.1", "service": str(port),
                                        "family": "ipv4", "websocket": False, "auth": "vnc"}

    wrong = Events(tvm)
    result = await vncdo("-s", f"127.0.0.1::{port}", "-p", "wrong", "capture",
                         str(tmp_path / "no.png"))
    await wrong.disconnected.wait()
    assert result.returncode != 0
    assert wrong.names == ["VNC_CONNECTED", "VNC_DISCONNECTED"]


# -- raw clients: bad input keeps the server serving -----------------------------------


async def rfb_connect(path: Path) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX)
    await sock.connect(str(path))
    return sock


async def recv_exactly(sock: trio.socket.SocketType, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await sock.recv(n - len(data))
        assert chunk, data
        data += chunk
    return data


async def handshake(path: Path, password: str | None = None) -> trio.socket.SocketType:
    sock = await rfb_connect(path)
    assert await recv_exactly(sock, 12) == b"RFB 003.008\n"
    await sock.send(b"RFB 003.008\n")
    types = await recv_exactly(sock, 2)
    if password is None:
        assert types == b"\x01\x01"
        await sock.send(b"\x01")
    else:
        assert types == b"\x01\x02"
        await sock.send(b"\x02")
        challenge = await recv_exactly(sock, 16)
        await sock.send(vnc_response(password, challenge))
    assert await recv_exactly(sock, 4) == bytes(4)
    await sock.send(b"\x01")
    head = await recv_exactly(sock, 24)
    assert struct.unpack(">HH", head[:4]) == (640, 480)
    await recv_exactly(sock, struct.unpack(">I", head[20:])[0])
    return sock


async def test_garbage_and_half_handshakes_keep_the_server_serving(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """A client sending garbage is dropped (protocol_version's vnc_client_error), one
    that leaves mid-handshake is cleaned up; each still had its CONNECTED and
    DISCONNECTED, and the next client is served."""
    path = tmp_path / "vnc.sock"
    tvm = vm_cmdline("-S", "-vnc", f"unix:{path}")
    events = Events(tvm)
    garbage = await rfb_connect(path)
    await recv_exactly(garbage, 12)
    await garbage.send(b"\x00\xff" * 64)
    assert await garbage.recv(100) == b""  # the server hung up
    garbage.close()
    await events.disconnected.wait()

    events = Events(tvm)
    half = await rfb_connect(path)
    await recv_exactly(half, 12)
    await half.send(b"RFB 003.008\n")
    await recv_exactly(half, 2)
    half.close()
    await events.disconnected.wait()
    assert events.names == ["VNC_CONNECTED", "VNC_DISCONNECTED"]

    events = Events(tvm)
    good = await handshake(path)
    await good.send(b"\x63")  # an unknown message type
    assert await good.recv(100) == b""
    good.close()
    await events.disconnected.wait()
    assert events.names == ["VNC_CONNECTED", "VNC_INITIALIZED", "VNC_DISCONNECTED"]
    assert ok(tvm, "query-vnc")["clients"] == []


async def test_add_client_serves_a_passed_socket_without_auth(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """qmp_add_client vnc with skipauth: the monitor's fd becomes a client whose
    security type is None although the display asks for a password."""
    tvm = vm_cmdline("-S", "-vnc", f"unix:{tmp_path / 'vnc.sock'},password")
    ours, theirs = socket.socketpair()
    talk = tvm.talk()
    talk.send({"execute": "getfd", "arguments": {"fdname": "viewer"}}, fds=[os.dup(theirs.fileno())])
    theirs.close()
    assert talk.execute("add_client", {"protocol": "vnc", "fdname": "viewer",
                                       "skipauth": True}) == {"return": {}}
    sock = trio.socket.from_stdlib_socket(ours)
    assert await recv_exactly(sock, 12) == b"RFB 003.008\n"
    await sock.send(b"RFB 003.008\n")
    assert await recv_exactly(sock, 2) == b"\x01\x01"
    sock.close()


async def test_change_vnc_moves_the_listener(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """qmp_change_vnc_listen: the display closes and opens on the new address; the
    password survives (vnc_display_close keeps vd->password)."""
    tvm = vm_cmdline("-S", "-vnc", f"unix:{tmp_path / 'a.sock'},password")
    ok(tvm, "change-vnc-password", {"password": "pw"})
    ok(tvm, "change", {"device": "vnc", "target": f"unix:{tmp_path / 'b.sock'},password"})
    assert ok(tvm, "query-vnc")["service"] == str(tmp_path / "b.sock")
    sock = await handshake(tmp_path / "b.sock", "pw")
    sock.close()


async def test_hmp_info_vnc_lists_server_and_clients(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """hmp.c hmp_info_vnc: the display id, its servers with their auth, its clients."""
    path = tmp_path / "vnc.sock"
    tvm = vm_cmdline("-S", "-vnc", f"unix:{path}")
    sock = await handshake(path)
    out = tvm.talk().execute("human-monitor-command", {"command-line": "info vnc"})
    assert out["return"] == (f"default:\r\n  Server: :{path} (unix)\r\n"
                             "    Auth: none (Sub: none)\r\n"
                             "  Client: : (unix)\r\n"
                             "    x509_dname: none\r\n    sasl_username: none\r\n")
    sock.close()


# -- errors -------------------------------------------------------------------------------


def test_without_vnc(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qmp_query_vnc: no display -> disabled; no servers; HMP prints None."""
    tvm = vm_cmdline("-S")
    assert ok(tvm, "query-vnc") == {"enabled": False}
    assert ok(tvm, "query-vnc-servers") == []
    assert ok(tvm, "human-monitor-command", {"command-line": "info vnc"}) == "None\r\n"


def test_vnc_none_is_a_display_without_listener(vm_cmdline: Callable[..., VmHarness]) -> None:
    """`-vnc none`: the display exists (query-vnc-servers) but does not listen."""
    tvm = vm_cmdline("-S", "-vnc", "none")
    assert ok(tvm, "query-vnc") == {"enabled": False}
    assert ok(tvm, "query-vnc-servers") == [
        {"id": "default", "server": [], "clients": [], "auth": "none"}]


@pytest.mark.parametrize(("arguments", "desc"), [
    ({"protocol": "vnc", "password": "x", "connected": "bogus"}, "Invalid parameter 'connected'"),
    ({"protocol": "vnc", "password": "x", "connected": "fail"}, "Invalid parameter 'connected'"),
    ({"protocol": "vnc", "password": "x", "connected": "disconnect"},
     "Invalid parameter 'connected'"),
    ({"protocol": "rdp", "password": "x"}, "Invalid parameter 'protocol'"),
    ({"protocol": "vnc", "password": "x"}, "Could not set password"),
])
def test_set_password_errors(vm_cmdline: Callable[..., VmHarness], arguments: dict[str, str],
                             desc: str) -> None:
    """qmp_set_password: `connected` is checked first; VNC keeps only `keep`."""
    assert error(vm_cmdline("-S"), "set_password", arguments) == ("GenericError", desc)


def test_set_password_needs_password_auth(vm_cmdline: Callable[..., VmHarness],
                                          tmp_path: Path) -> None:
    """vnc_display_password: VNC_AUTH_NONE -> "Could not set password"."""
    tvm = vm_cmdline("-S", "-vnc", "none")
    assert error(tvm, "set_password", {"protocol": "vnc", "password": "x"}) == (
        "GenericError", "Could not set password")
    assert error(tvm, "change-vnc-password", {"password": "x"}) == (
        "GenericError", "Could not set password")


def test_spice_is_compiled_but_not_in_use(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qemu_using_spice: DeviceNotActive "SPICE is not in use"; query-spice disabled."""
    tvm = vm_cmdline("-S")
    assert ok(tvm, "query-spice") == {"enabled": False, "migrated": False,
                                      "mouse-mode": "client"}
    for name, arguments in [
            ("set_password", {"protocol": "spice", "password": "x"}),
            ("expire_password", {"protocol": "spice", "time": "now"}),
            ("client_migrate_info", {"protocol": "spice", "hostname": "h", "port": 1})]:
        assert error(tvm, name, arguments) == ("DeviceNotActive", "SPICE is not in use")


def test_client_migrate_info_other_protocol(vm_cmdline: Callable[..., VmHarness]) -> None:
    """monitor.c qmp_client_migrate_info: QERR_INVALID_PARAMETER_VALUE."""
    assert error(vm_cmdline("-S"), "client_migrate_info",
                 {"protocol": "vnc", "hostname": "h"}) == (
        "GenericError", "Parameter 'protocol' expects spice")


def test_expire_password_errors(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qmp_expire_password: unknown protocol; no VNC display."""
    tvm = vm_cmdline("-S")
    assert error(tvm, "expire_password", {"protocol": "rdp", "time": "now"}) == (
        "GenericError", "Invalid parameter 'protocol'")
    assert error(tvm, "expire_password", {"protocol": "vnc", "time": "+10"}) == (
        "GenericError", "Could not set password")


def test_expire_password_forms(vm_cmdline: Callable[..., VmHarness]) -> None:
    """`now` is 0, `never` TIME_MAX, `+N` from time(NULL), else UNIX seconds."""
    tvm = vm_cmdline("-S", "-vnc", "none,password")
    display = tvm.vm.display.vnc().find(None)
    assert display is not None
    wall = int(tvm.machine.clock.wall())
    for time, when in [("now", 0), ("+60", wall + 60), ("12345", 12345), ("x", 0)]:
        ok(tvm, "expire_password", {"protocol": "vnc", "time": time})
        assert display.expires == when
    ok(tvm, "expire_password", {"protocol": "vnc", "time": "never"})
    assert display.expires == float("inf")


def test_add_client_errors(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qmp_add_client: monitor_get_fd first, then the protocol."""
    tvm = vm_cmdline("-S")
    talk = tvm.talk()
    assert talk.execute("add_client", {"protocol": "vnc", "fdname": "nope"})["error"] == {
        "class": "GenericError", "desc": "File descriptor named 'nope' has not been found"}
    for protocol, expected in [("spice", {"class": "DeviceNotActive",
                                          "desc": "SPICE is not in use"}),
                               ("bogus", {"class": "GenericError",
                                          "desc": "protocol 'bogus' is invalid"})]:
        r, w = os.pipe()
        os.close(w)
        talk.send({"execute": "getfd", "arguments": {"fdname": "f"}}, fds=[r])
        assert talk.execute("add_client", {"protocol": protocol, "fdname": "f"})["error"] == (
            expected)


@pytest.mark.parametrize(("option", "desc"), [
    ("127.0.0.1", "no vnc port specified"),
    ("127.0.0.1:", "vnc port cannot be empty"),
    ("127.0.0.1:x1", "can't convert to a number: x1"),
    ("127.0.0.1:60000", "port 60000 out of range"),
    ("unix:/nonexistent/dir/s,to=3", "Port range not support with UNIX socket"),
    ("none,sasl", "VNC SASL auth requires cyrus-sasl support"),
    ("none,tls-creds=tls0", "No TLS credentials with id 'tls0'"),
    ("none,tls-creds=tls0,x509=/d", "'tls-creds' parameter is mutually exclusive with "
                                    "'tls', 'x509' and 'x509verify' parameters"),
    ("none,share=sometimes", "unknown vnc share= option"),
    ("unix:/nonexistent/dir/s", "Failed to bind socket to /nonexistent/dir/s: "
                                "No such file or directory"),
    # io/dns-resolver.c asks util/qemu-sockets.c inet_ai_family_from_address first
    ("127.0.0.1:0,ipv4=off,ipv6=off", "Cannot disable IPv4 and IPv6 at same time"),
])
def test_vnc_option_errors(vm_cmdline: Callable[..., VmHarness], option: str,
                           desc: str) -> None:
    """vnc_init_func: "Failed to start VNC server: " + vnc_display_open's error, at the
    -vnc option (vnc_display_get_address, unix_listen_saddr and the option checks)."""
    with pytest.raises(CommandLineError) as caught:
        vm_cmdline("-S", "-vnc", option)
    assert str(caught.value) == f"-vnc {option}: Failed to start VNC server: {desc}"


def test_vnc_port_in_use(vm_cmdline: Callable[..., VmHarness]) -> None:
    """inet_listen_saddr: every port of the range taken -> "Failed to find an
    available port"."""
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for display in range(50, 100):
        try:
            taken.bind(("127.0.0.1", 5900 + display))
            break
        except OSError:
            continue
    else:
        pytest.skip("no free port in 5950..5999")
    taken.listen(1)
    with taken, pytest.raises(CommandLineError) as caught:
        vm_cmdline("-S", "-vnc", f"127.0.0.1:{display}")
    assert str(caught.value).endswith(
        "Failed to start VNC server: Failed to find an available port: Address already in use")


def test_change_vnc_errors_keep_the_display_closed(vm_cmdline: Callable[..., VmHarness],
                                                  tmp_path: Path) -> None:
    """vnc_display_open: a failure after vnc_display_close leaves it closed."""
    tvm = vm_cmdline("-S", "-vnc", f"unix:{tmp_path / 'a.sock'}")
    assert error(tvm, "change", {"device": "vnc", "target": "127.0.0.1"}) == (
        "GenericError", "no vnc port specified")
    assert ok(tvm, "query-vnc") == {"enabled": False}


def test_hmp_password_hint_without_password_auth(vm_cmdline: Callable[..., VmHarness]) -> None:
    """vnc_display_password: a display without password auth prints its hint on a
    human monitor (error_printf_unless_qmp) before hmp_handle_error's message; QMP
    shows only the error; without any display there is no hint."""
    hint = ("If you want use passwords please enable password auth using "
            "'-vnc ${dpy},password'.\r\n")
    tvm = vm_cmdline("-S", "-vnc", "none")
    assert ok(tvm, "human-monitor-command", {"command-line": "set_password vnc x"}) == (
        hint + "Could not set password\r\n")
    assert ok(tvm, "human-monitor-command", {"command-line": "change vnc password x"}) == (
        hint + "Could not set password\r\n")
    assert error(tvm, "set_password", {"protocol": "vnc", "password": "x"}) == (
        "GenericError", "Could not set password")
    bare = vm_cmdline("-S")
    assert ok(bare, "human-monitor-command", {"command-line": "set_password vnc x"}) == (
        "Could not set password\r\n")


def test_the_program_exits_on_a_bad_vnc_option(tmp_path: Path) -> None:
    """vl.c vnc_init_func: error_reportf_err(..., "Failed to start VNC server: ")
    at the -vnc option's location, then exit(1)."""
    import subprocess

    from tests.emulator import program_command, program_env

    done = subprocess.run([*program_command(), "-machine", "none", "-nodefaults",
                           "-vnc", "127.0.0.1"], capture_output=True, text=True,
                          env=program_env(tmp_path / "cache"), timeout=120)
    assert done.returncode == 1
    assert done.stderr == ("qmp-emulator: -vnc 127.0.0.1: Failed to start VNC server: "
                           "no vnc port specified\n")


async def test_clients_outlive_a_change_of_listener(
        vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """vnc_display_close closes the listeners only: a connected client stays, is
    listed under the new server, and its VNC_DISCONNECTED names the new server."""
    tvm = vm_cmdline("-S", "-vnc", f"unix:{tmp_path / 'a.sock'}")
    sock = await handshake(tmp_path / "a.sock")
    ok(tvm, "change", {"device": "vnc", "target": f"unix:{tmp_path / 'b.sock'}"})
    info = ok(tvm, "query-vnc")
    assert info["service"] == str(tmp_path / "b.sock") and len(info["clients"]) == 1
    await sock.send(struct.pack(">BBHHHH", 3, 0, 0, 0, 1, 1))
    assert len(await recv_exactly(sock, 20)) == 20  # still served: one 32-bit pixel
    events = Events(tvm)
    sock.close()
    await events.disconnected.wait()
    assert events.data[0]["server"]["service"] == str(tmp_path / "b.sock")
