"""Images opened through fd sets: `-add-fd` and `file=/dev/fdset/N` (issue 14 item 3).

QEMU 2.11's file-posix opens its image with util/osdep.c qemu_open, which for a
`/dev/fdset/N` name takes a descriptor of set N of the same access mode
(monitor.c monitor_fdset_get_fd), dups it (qemu_dup_flags) and records the dup in the
set (monitor_fdset_dup_fd_add); the set's own descriptor stays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import VmHarness
from vmm.cmdline import CommandLineError


def _inherited(path: Path, flags: int) -> int:
    fd = os.open(path, flags)
    os.set_inheritable(fd, True)
    return fd


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def test_drive_on_an_fdset_of_the_command_line(vm_cmdline: Callable[..., VmHarness],
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """vl.c parse_add_fd dups the inherited descriptor (F_DUPFD_CLOEXEC) into set N and
    cleanup_add_fd closes the original; raw_open_common's qemu_open("/dev/fdset/1")
    dups the set's read-write descriptor: the image reads through it, the set keeps
    its descriptor, and query-block names the image `/dev/fdset/1`."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"\xab" * 512 + bytes(1024 * 1024 - 512))
    fd = _inherited(image, os.O_RDWR)
    tvm = vm_cmdline("-add-fd", f"fd={fd},set=1,opaque=disk", "-drive",
                     "file=/dev/fdset/1,format=raw,if=none,id=d0", "-S")
    talk = tvm.talk()
    fdsets = talk.execute("query-fdsets")["return"]
    assert [(s["fdset-id"], [f["opaque"] for f in s["fds"]]) for s in fdsets] == [(1, ["disk"])]
    kept = fdsets[0]["fds"][0]["fd"]
    assert kept != fd and not os.get_inheritable(kept)  # the close-on-exec duplicate
    info = talk.execute("query-block")["return"][0]
    assert info["inserted"]["file"] == "/dev/fdset/1"
    assert info["inserted"]["ro"] is False
    reply = talk.execute("human-monitor-command",
                         {"command-line": "qemu-io d0 \"read -P 0xab 0 512\""})
    # hmp_qemu_io's output is QEMU's stdout, not the reply.
    assert reply == {"return": ""}
    assert capsys.readouterr().out.startswith("read 512/512 bytes at offset 0\n")


def test_fdset_without_the_access_mode_is_refused(vm_cmdline: Callable[..., VmHarness],
                                                 tmp_path: Path) -> None:
    """monitor_fdset_get_fd: a set without a descriptor of the wanted access mode gives
    EACCES, an unknown set ENOENT; raw_open_common reports error_setg_errno(errp,
    errno, "Could not open '%s'", filename)."""
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(65536))
    tvm = vm_cmdline("-S")
    talk = tvm.talk()
    rd = os.open(image, os.O_RDONLY)
    talk.send({"execute": "add-fd", "arguments": {"fdset-id": 2}}, fds=[rd])
    before = _open_fds()
    reply = talk.execute("blockdev-add", {"driver": "raw", "node-name": "n0",
                                          "file": {"driver": "file",
                                                   "filename": "/dev/fdset/2"}})
    assert reply["error"]["desc"] == "Could not open '/dev/fdset/2': Permission denied"
    reply = talk.execute("blockdev-add", {"driver": "raw", "node-name": "n0",
                                          "file": {"driver": "file",
                                                   "filename": "/dev/fdset/7"}})
    assert reply["error"]["desc"] == "Could not open '/dev/fdset/7': No such file or directory"
    assert _open_fds() == before
    # Read-only, the set's descriptor serves; closing the node closes only the dups
    # (qemu_close: monitor_fdset_dup_fd_remove).
    reply = talk.execute("blockdev-add", {"driver": "raw", "node-name": "n0",
                                          "read-only": True,
                                          "file": {"driver": "file",
                                                   "filename": "/dev/fdset/2"}})
    assert reply == {"return": {}}
    assert talk.execute("blockdev-del", {"node-name": "n0"}) == {"return": {}}
    assert _open_fds() == before
    assert talk.execute("query-fdsets")["return"][0]["fds"][0]["fd"] == rd


def test_add_fd_of_a_closed_descriptor(vm_cmdline: Callable[..., VmHarness]) -> None:
    """vl.c parse_add_fd: fcntl(fd, F_GETFD) fails or FD_CLOEXEC is set ->
    error_report("fd is not valid or already in use") at the option, exit 1."""
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    with pytest.raises(CommandLineError) as exc:
        vm_cmdline("-add-fd", f"fd={fd},set=1", "-S")
    assert str(exc.value) == f"-add-fd fd={fd},set=1: fd is not valid or already in use"
