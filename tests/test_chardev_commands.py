"""chardev-add/-remove/-change/-send-break, ringbuf-write/-read, query-chardev(-backends)
against real backends (devices.md §4; QEMU 2.11 chardev/char.c, chardev/char-*.c)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import SyncVm


@pytest.fixture
def vm() -> Any:
    machine = SyncVm(["-machine", "none", "-nodefaults"])
    yield machine
    machine.vm.close()


def run(vm: SyncVm, cmd: str, **args: Any) -> Any:
    reply = vm.execute({"execute": cmd, "arguments": args})
    assert reply is not None
    return reply


def error(vm: SyncVm, cmd: str, **args: Any) -> str:
    reply = run(vm, cmd, **args)
    assert "error" in reply, reply
    assert reply["error"]["class"] == "GenericError"
    return str(reply["error"]["desc"])


def ok(vm: SyncVm, cmd: str, **args: Any) -> Any:
    reply = run(vm, cmd, **args)
    assert "return" in reply, reply
    return reply["return"]


def ringbuf(size: int | None = None) -> dict[str, Any]:
    return {"type": "ringbuf", "data": {} if size is None else {"size": size}}


def unix_server(path: Path) -> dict[str, Any]:
    return {"type": "socket", "data": {"addr": {"type": "unix", "data": {"path": str(path)}}}}


def labels(vm: SyncVm) -> dict[str, dict[str, Any]]:
    return {c["label"]: c for c in ok(vm, "query-chardev")}


def test_ringbuf_overwrites_oldest(vm: SyncVm) -> None:
    """devices.md §4.4 (verified): size 8, write 'hello world', read 'lo world'
    [char-ringbuf.c ringbuf_chr_write]."""
    ok(vm, "chardev-add", id="r", backend=ringbuf(8))
    ok(vm, "ringbuf-write", device="r", data="hello world")
    assert ok(vm, "ringbuf-read", device="r", size=100) == "lo world"
    assert ok(vm, "ringbuf-read", device="r", size=100) == ""


def test_ringbuf_base64(vm: SyncVm) -> None:
    """devices.md §4.4: reading 3 of 'hello' base64 gives 'aGVs' [qmp_ringbuf_read]."""
    ok(vm, "chardev-add", id="r", backend=ringbuf())
    ok(vm, "ringbuf-write", device="r", data="aGVsbG8=", format="base64")
    assert ok(vm, "ringbuf-read", device="r", size=3, format="base64") == "aGVs"
    assert ok(vm, "ringbuf-read", device="r", size=3) == "lo"


def test_ringbuf_utf8_stops_at_nul(vm: SyncVm) -> None:
    """qmp_ringbuf_write takes strlen(data): a NUL ends what is written."""
    ok(vm, "chardev-add", id="r", backend=ringbuf())
    ok(vm, "ringbuf-write", device="r", data="ab\u0000cd")
    assert ok(vm, "ringbuf-read", device="r", size=10) == "ab"


def test_ringbuf_size_not_power_of_two(vm: SyncVm) -> None:
    """devices.md §4.2 [char-ringbuf.c qemu_chr_open_ringbuf]."""
    assert error(vm, "chardev-add", id="r", backend=ringbuf(7)) == \
        "size of ringbuf chardev must be power of two"


def test_ringbuf_write_unknown_device(vm: SyncVm) -> None:
    """devices.md §4.4 [qmp_ringbuf_write]."""
    assert error(vm, "ringbuf-write", device="nope", data="x") == "Device 'nope' not found"


def test_ringbuf_read_not_a_ringbuf(vm: SyncVm) -> None:
    """devices.md §4.4 [qmp_ringbuf_read: CHARDEV_IS_RINGBUF]."""
    ok(vm, "chardev-add", id="n", backend={"type": "null", "data": {}})
    assert error(vm, "ringbuf-read", device="n", size=1) == "n is not a ringbuf device"


def test_ringbuf_read_size_zero(vm: SyncVm) -> None:
    """devices.md §4.4 [qmp_ringbuf_read]."""
    ok(vm, "chardev-add", id="r", backend=ringbuf())
    assert error(vm, "ringbuf-read", device="r", size=0) == "size must be greater than zero"


def test_ringbuf_base64_invalid(vm: SyncVm) -> None:
    """devices.md §4.4 [util/base64.c qbase64_decode]; the NUL texts need in_len != -1,
    which qmp_ringbuf_write never passes."""
    ok(vm, "chardev-add", id="r", backend=ringbuf())
    assert error(vm, "ringbuf-write", device="r", data="a*b", format="base64") == \
        "Base64 data contains invalid characters"


def test_not_a_valid_driver(vm: SyncVm) -> None:
    """devices.md §4.2 [chardev/char.c char_get_class]: in the schema, not in the build."""
    assert error(vm, "chardev-add", id="b", backend={"type": "braille", "data": {}}) == \
        "'braille' is not a valid char driver name"


def test_unknown_type(vm: SyncVm) -> None:
    """devices.md §4.2: the schema's enum check."""
    assert error(vm, "chardev-add", id="b", backend={"type": "bogus", "data": {}}) == \
        "Invalid parameter 'bogus'"


def test_duplicate_id_after_open(vm: SyncVm, tmp_path: Path) -> None:
    """devices.md §4.2 [qemu_chardev_new]: the backend opens (the socket is bound),
    then the id clashes."""
    ok(vm, "chardev-add", id="c", backend=ringbuf())
    sock = tmp_path / "dup.sock"
    assert error(vm, "chardev-add", id="c", backend=unix_server(sock)) == \
        "attempt to add duplicate property 'c' to object (type 'container')"
    assert sock.exists()


def test_file_cannot_open(vm: SyncVm, tmp_path: Path) -> None:
    """devices.md §4.2 [char-file.c qmp_chardev_open_file_source]."""
    path = tmp_path / "missing" / "out"
    assert error(vm, "chardev-add", id="f",
                 backend={"type": "file", "data": {"out": str(path)}}) == \
        f"Could not open '{path}': No such file or directory"


def test_file_append(vm: SyncVm, tmp_path: Path) -> None:
    """char-file.c: append opens O_APPEND, otherwise the file is truncated."""
    path = tmp_path / "log"
    path.write_bytes(b"old\n")
    ok(vm, "chardev-add", id="f",
       backend={"type": "file", "data": {"out": str(path), "append": True}})
    assert labels(vm)["f"]["filename"] == "file"
    ok(vm, "chardev-remove", id="f")
    assert path.read_bytes() == b"old\n"
    ok(vm, "chardev-add", id="g", backend={"type": "file", "data": {"out": str(path)}})
    assert path.read_bytes() == b""


def test_socket_client_refused(vm: SyncVm) -> None:
    """devices.md §4.2 [util/qemu-sockets.c inet_connect_saddr]."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        assert error(vm, "chardev-add", id="c", backend={"type": "socket", "data": {
            "server": False, "addr": {"type": "inet", "data": {"host": "127.0.0.1",
                                                               "port": str(port)}}}}) == \
            "Failed to connect socket: Connection refused"


def test_socket_client_unix_missing(vm: SyncVm, tmp_path: Path) -> None:
    """util/qemu-sockets.c unix_connect_saddr names the path."""
    path = tmp_path / "none.sock"
    assert error(vm, "chardev-add", id="c", backend={"type": "socket", "data": {
        "server": False, "addr": {"type": "unix", "data": {"path": str(path)}}}}) == \
        f"Failed to connect socket {path}: No such file or directory"


def test_socket_client_reconnect_created_disconnected(vm: SyncVm, tmp_path: Path) -> None:
    """devices.md §4.2: with reconnect the client is created even if the peer is down."""
    path = tmp_path / "later.sock"
    ok(vm, "chardev-add", id="c", backend={"type": "socket", "data": {
        "server": False, "reconnect": 1,
        "addr": {"type": "unix", "data": {"path": str(path)}}}})
    assert labels(vm)["c"]["filename"] == f"disconnected:unix:{path}"


def test_socket_server_address_in_use(vm: SyncVm) -> None:
    """util/qemu-sockets.c inet_listen_saddr: EADDRINUSE moves on to the next address,
    and when none is left the error is "Failed to find an available port" (2.11's
    source; devices.md §4.2 abbreviates listen errors as "Failed to bind socket ...")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert error(vm, "chardev-add", id="c", backend={"type": "socket", "data": {
            "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": str(port)}}}}) == \
            "Failed to find an available port: Address already in use"


def test_tls_creds_missing(vm: SyncVm) -> None:
    """devices.md §4.2 [char-socket.c qmp_chardev_open_socket]."""
    assert error(vm, "chardev-add", id="c", backend={"type": "socket", "data": {
        "tls-creds": "tls0",
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}}}}) == \
        "No TLS credentials with id 'tls0'"


def test_serial_host_device_missing(vm: SyncVm) -> None:
    """char-serial.c qmp_chardev_open_serial: the open error of a missing device."""
    assert error(vm, "chardev-add", id="s",
                 backend={"type": "serial", "data": {"device": "/dev/ttyNOPE9"}}) == \
        "Could not open '/dev/ttyNOPE9': No such file or directory"


def test_query_chardev_filenames(vm: SyncVm, tmp_path: Path) -> None:
    """devices.md §4.1 [char-socket.c SocketAddress_to_str; char-pty.c]: filenames."""
    ok(vm, "chardev-add", id="u", backend=unix_server(tmp_path / "u.sock"))
    ok(vm, "chardev-add", id="t", backend={"type": "socket", "data": {
        "telnet": True, "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}}}})
    pty = ok(vm, "chardev-add", id="p", backend={"type": "pty", "data": {}})["pty"]
    ok(vm, "chardev-add", id="n", backend={"type": "null", "data": {}})
    found = labels(vm)
    assert found["u"] == {"label": "u", "frontend-open": False,
                          "filename": f"disconnected:unix:{tmp_path / 'u.sock'},server"}
    assert found["t"]["filename"].startswith("disconnected:telnet:127.0.0.1:")
    assert found["t"]["filename"].endswith(",server")
    assert found["p"]["filename"] == f"pty:{pty}"
    assert os.path.exists(pty)
    assert found["n"]["filename"] == "null"


def test_query_chardev_backends(vm: SyncVm) -> None:
    """devices.md §4.3 (verified set)."""
    names = {b["name"] for b in ok(vm, "query-chardev-backends")}
    assert names == {"tty", "parport", "vc", "stdio", "udp", "mux", "wctablet", "testdev",
                     "pty", "parallel", "pipe", "file", "ringbuf", "serial", "socket",
                     "memory", "null", "msmouse"}


def test_remove_not_found(vm: SyncVm) -> None:
    """devices.md §4.3 [qmp_chardev_remove]."""
    assert error(vm, "chardev-remove", id="x") == "Chardev 'x' not found"


def test_remove_busy(vm: SyncVm) -> None:
    """devices.md §4.3 (verified): a frontend holds it [qemu_chr_is_busy]; a mux on
    top of a chardev holds it too."""
    ok(vm, "chardev-add", id="base", backend=ringbuf())
    ok(vm, "chardev-add", id="m", backend={"type": "mux", "data": {"chardev": "base"}})
    assert error(vm, "chardev-remove", id="base") == "Chardev 'base' is busy"
    ok(vm, "chardev-remove", id="m")
    ok(vm, "chardev-remove", id="base")


def test_send_break_not_found(vm: SyncVm) -> None:
    """devices.md §4.3 [qmp_chardev_send_break]."""
    assert error(vm, "chardev-send-break", id="x") == "Chardev 'x' not found"
    ok(vm, "chardev-add", id="n", backend={"type": "null", "data": {}})
    assert ok(vm, "chardev-send-break", id="n") == {}


def test_change_does_not_exist(vm: SyncVm) -> None:
    """devices.md §4.3 [qmp_chardev_change]."""
    assert error(vm, "chardev-change", id="x", backend=ringbuf()) == \
        "Chardev 'x' does not exist"


def test_change_mux(vm: SyncVm) -> None:
    """devices.md §4.3 [qmp_chardev_change]."""
    ok(vm, "chardev-add", id="base", backend=ringbuf())
    ok(vm, "chardev-add", id="m", backend={"type": "mux", "data": {"chardev": "base"}})
    assert error(vm, "chardev-change", id="m", backend=ringbuf()) == \
        "Mux device hotswap not supported yet"


def test_change_unused_failing_add_loses_chardev(vm: SyncVm) -> None:
    """qmp_chardev_change's easy case unparents the old chardev before qmp_chardev_add:
    when the add fails, the chardev is gone."""
    ok(vm, "chardev-add", id="r", backend=ringbuf())
    assert error(vm, "chardev-change", id="r", backend=ringbuf(3)) == \
        "size of ringbuf chardev must be power of two"
    assert "r" not in labels(vm)
    ok(vm, "chardev-add", id="r", backend=ringbuf())
    ok(vm, "chardev-change", id="r", backend={"type": "null", "data": {}})
    assert labels(vm)["r"]["filename"] == "null"


def test_remove_closes_descriptors(vm: SyncVm, tmp_path: Path) -> None:
    """chardev-remove closes what chardev-add opened (no descriptor leaks)."""
    before = len(os.listdir("/proc/self/fd"))
    for i in range(3):
        ok(vm, "chardev-add", id=f"u{i}", backend=unix_server(tmp_path / f"{i}.sock"))
        ok(vm, "chardev-add", id=f"p{i}", backend={"type": "pty", "data": {}})
    for i in range(3):
        ok(vm, "chardev-remove", id=f"u{i}")
        ok(vm, "chardev-remove", id=f"p{i}")
    assert len(os.listdir("/proc/self/fd")) == before
