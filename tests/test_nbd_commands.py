"""QMP nbd-server-start/-add/-stop and HMP nbd_server_*: their texts and effects on
the block graph, without a client (blockdev-nbd.c, block.md §3.11; hmp.c)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import SyncVm


def qmp(vm: SyncVm, command: str, **args: Any) -> Any:
    reply = vm.execute({"execute": command, "arguments": args})
    assert reply is not None
    return reply


def desc(reply: dict[str, Any]) -> str:
    assert "error" in reply, reply
    assert reply["error"]["class"] == "GenericError"
    return str(reply["error"]["desc"])


@pytest.fixture
def vm() -> Any:
    vm = SyncVm(["-machine", "none", "-nodefaults", "--emu-strict",
                 "-drive", "driver=null-co,if=none,id=drive0,node-name=n0",
                 "-drive", "driver=null-co,if=none,id=ro0,read-only=on"])
    yield vm
    qmp(vm, "nbd-server-stop")
    vm.close()


def unix_addr(path: Path) -> dict[str, Any]:
    return {"type": "unix", "data": {"path": str(path)}}


def test_add_before_start(vm: SyncVm) -> None:
    """qmp_nbd_server_add without a server: "NBD server not running"."""
    assert desc(qmp(vm, "nbd-server-add", device="drive0")) == "NBD server not running"


def test_start_twice_and_stop_always_succeeds(vm: SyncVm, tmp_path: Path) -> None:
    """nbd_server_start: "NBD server already running"; qmp_nbd_server_stop succeeds
    even when no server runs (block.md §3.11)."""
    assert qmp(vm, "nbd-server-stop") == {"return": {}}
    assert qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "s")) == {"return": {}}
    assert desc(qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "t"))) == \
        "NBD server already running"
    assert qmp(vm, "nbd-server-stop") == {"return": {}}
    assert qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "s")) == {"return": {}}


def test_add_unknown_twice_and_in_use(vm: SyncVm, tmp_path: Path) -> None:
    """qmp_nbd_server_add: bdrv_lookup_bs's text for an unknown name; a second export
    of a name "NBD server already exporting device"; the export's BlockBackend makes
    the node "in use" (blockdev-del) until the server stops."""
    qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "s"))
    assert desc(qmp(vm, "nbd-server-add", device="nope")) == \
        "Cannot find device=nope nor node_name=nope"
    assert qmp(vm, "nbd-server-add", device="n0", writable=True) == {"return": {}}
    assert desc(qmp(vm, "nbd-server-add", device="n0")) == \
        "NBD server already exporting device 'n0'"
    assert qmp(vm, "nbd-server-add", device="drive0") == {"return": {}}
    exports = vm.vm.nbd.server.exports
    assert [(e.name, e.nbdflags) for e in exports] == [("n0", 0), ("drive0", 2)]
    qmp(vm, "nbd-server-stop")
    assert vm.vm.nbd.server.exports == []


def test_read_only_node_is_never_writable(vm: SyncVm, tmp_path: Path) -> None:
    """qmp_nbd_server_add: `writable` is forced off for a read-only node."""
    qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "s"))
    assert qmp(vm, "nbd-server-add", device="ro0", writable=True) == {"return": {}}
    assert vm.vm.nbd.server.exports[0].nbdflags == 2


def test_bind_errors(vm: SyncVm, tmp_path: Path) -> None:
    """inet_listen_saddr: a port in use is skipped, and with none left "Failed to find
    an available port: Address already in use"; unix_listen_saddr: "Failed to bind
    socket to PATH: <strerror>"."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        reply = qmp(vm, "nbd-server-start", addr={
            "type": "inet", "data": {"host": "127.0.0.1", "port": str(port)}})
        assert desc(reply) == "Failed to find an available port: Address already in use"
    finally:
        busy.close()
    reply = qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "no" / "s"))
    assert desc(reply) == f"Failed to bind socket to {tmp_path}/no/s: No such file or directory"
    assert desc(qmp(vm, "nbd-server-add", device="drive0")) == "NBD server not running"


def test_tls_creds_unknown(vm: SyncVm, tmp_path: Path) -> None:
    """nbd_get_tls_creds: "No TLS credentials with id '%s'" (after the listen)."""
    reply = qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "s"), **{"tls-creds": "t0"})
    assert desc(reply) == "No TLS credentials with id 't0'"
    assert qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "s")) == {"return": {}}


def test_export_closes_with_its_medium(vm: SyncVm, tmp_path: Path) -> None:
    """nbd_eject_notifier: an export added by a BlockBackend's name closes when that
    BlockBackend loses its medium; one added by node name does not."""
    qmp(vm, "nbd-server-start", addr=unix_addr(tmp_path / "s"))
    qmp(vm, "nbd-server-add", device="drive0")
    qmp(vm, "nbd-server-add", device="n0")
    assert qmp(vm, "eject", device="drive0", force=True) == {"return": {}}
    assert [e.name for e in vm.vm.nbd.server.exports] == ["n0"]


def test_start_with_both_families_off(vm: SyncVm) -> None:
    """inet_listen_saddr asks inet_ai_family_from_address first: "Cannot disable IPv4
    and IPv6 at same time" (util/qemu-sockets.c)."""
    addr = {"type": "inet", "data": {"host": "127.0.0.1", "port": "0",
                                     "ipv4": False, "ipv6": False}}
    assert desc(qmp(vm, "nbd-server-start", addr=addr)) == \
        "Cannot disable IPv4 and IPv6 at same time"


@pytest.mark.parametrize(("uri", "message"), [
    ("unix:", "invalid Unix socket address"),
    ("fd:", "invalid file descriptor address"),
    ("localhost", "error parsing address 'localhost'"),
    ("localhost:", "error parsing address 'localhost:'"),
    ("vsock:3", "error parsing address '3'"),
])
def test_hmp_address_errors(vm: SyncVm, uri: str, message: str) -> None:
    """hmp_nbd_server_start: socket_parse's errors (util/qemu-sockets.c socket_parse,
    inet_parse, vsock_parse) are the command's; no server starts."""
    reply = qmp(vm, "human-monitor-command", **{"command-line": f"nbd_server_start {uri}"})
    assert reply["return"] == f"{message}\r\n"
    assert not vm.vm.nbd.server.running


def test_hmp(vm: SyncVm, tmp_path: Path) -> None:
    """hmp_nbd_server_start: socket_parse's address, -w only with -a, -a exports every
    device with a medium; nbd_server_add and nbd_server_stop."""
    def hmp(line: str) -> str:
        reply = qmp(vm, "human-monitor-command", **{"command-line": line})
        return str(reply["return"])

    assert hmp("nbd_server_start -w unix:/x") == "-w only valid together with -a\r\n"
    assert hmp(f"nbd_server_start -a unix:{tmp_path}/s") == ""
    assert [(e.name, e.nbdflags) for e in vm.vm.nbd.server.exports] == \
        [("drive0", 2), ("ro0", 2)]
    assert hmp(f"nbd_server_start unix:{tmp_path}/t") == "NBD server already running\r\n"
    assert hmp("nbd_server_stop") == ""
    assert hmp(f"nbd_server_start unix:{tmp_path}/s") == ""
    assert hmp("nbd_server_add -w n0") == ""
    assert hmp("nbd_server_add n0") == "NBD server already exporting device 'n0'\r\n"
    assert [(e.name, e.nbdflags) for e in vm.vm.nbd.server.exports] == [("n0", 0)]
