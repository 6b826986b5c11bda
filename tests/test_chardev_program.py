"""The program with real clients: qemu.qmp drives chardev-add/-remove while a plain
socket client is connected to the chardev (devices.md §4.3; QEMU 2.11 chardev/char.c
qmp_chardev_remove, qemu_chr_is_busy; chardev/char-socket.c tcp_chr_disconnect)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient
from qemu.qmp.qmp_client import ExecuteError

from tests.test_program import wait_for_socket


async def remove_while_connected(qmp_path: Path, chardev_path: Path) -> list[Any]:
    qmp = QMPClient("chardev-test")
    await qmp.connect(str(qmp_path))
    out: list[Any] = []
    out.append(await qmp.execute("chardev-add", {"id": "c0", "backend": {
        "type": "socket", "data": {"addr": {"type": "unix",
                                            "data": {"path": str(chardev_path)}}}}}))
    reader, writer = await asyncio.open_unix_connection(str(chardev_path))
    for _ in range(10000):  # round trips (no sleep) until the emulator has accepted it
        info = {c["label"]: c for c in await qmp.execute("query-chardev")}
        if not info["c0"]["filename"].startswith("disconnected:"):
            break
    out.append(info["c0"]["filename"])
    writer.write(b"bytes nobody reads")
    await writer.drain()
    try:
        await qmp.execute("chardev-remove", {"id": "serial0"})
    except ExecuteError as err:
        out.append(str(err))
    out.append(await qmp.execute("chardev-remove", {"id": "c0"}))
    try:
        # the emulator closed it: end of file, or, when the bytes were still unread in
        # its socket (a chardev without a frontend does not read), a reset, as AF_UNIX
        # reports a close with data queued (net/unix/af_unix.c unix_release_sock)
        out.append(await asyncio.wait_for(reader.read(), 20))
    except ConnectionResetError:
        out.append(b"")
    writer.close()
    info = {c["label"]: c for c in await qmp.execute("query-chardev")}
    out.append(sorted(info))
    await qmp.disconnect()
    return out


def test_qemu_qmp_removes_a_connected_chardev(spawn, tmp_path: Path) -> None:
    """chardev-remove of a chardev without a frontend closes its client's connection;
    one held by a serial port is busy."""
    qmp_path = tmp_path / "qmp.sock"
    chardev_path = tmp_path / "c0.sock"
    proc = spawn("-machine", "pc", "-nodefaults", "-display", "none", "-serial", "null",
                 "-qmp", f"unix:{qmp_path},server,nowait")
    wait_for_socket(qmp_path, proc)
    result = asyncio.run(remove_while_connected(qmp_path, chardev_path))
    assert result[0] == {}
    assert result[1] == f"unix:{chardev_path},server"
    assert result[2] == "Chardev 'serial0' is busy"
    assert result[3] == {}
    assert result[4] == b""
    assert result[5] == ["compat_monitor0", "serial0"]
