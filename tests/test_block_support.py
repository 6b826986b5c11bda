"""Shared helpers of the block-layer tests (no tests here).

`Block` is a pure block layer on a `RecordingHost` with its command handlers (and
`change`, composed with a machine's VNC displays in `vmm.change`), qdev over it for
the block devices, a seeded node-name generator, and shortcuts for the command
line; `qemu_img` runs Debian's qemu-img; `create_image` is the image edge's writer
stamped with a fixed creation time and a seeded random source, so the images tests
write are the same on every run. Every test module of the block layer imports what
it needs from
here, so the fixtures stay in one place without touching the shared conftest.
"""

from __future__ import annotations

import functools
import json
import random
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from blockdev import drive as block_drive
from blockdev.commands import BlockCommands
from blockdev.device_backends import DeviceBackends
from blockdev.host import RecordingHost
from blockdev.image import file as image_file
from blockdev.layer import BlockLayer
from devices.display.vnc import VncDisplays
from devices.qdev import Qdev, attach_device
from schema.errors import QMPError
from vmm.change import ChangeCommand

QEMU_IMG = shutil.which("qemu-img") or "/usr/bin/qemu-img"

needs_qemu_img = pytest.mark.skipif(not Path(QEMU_IMG).exists(), reason="qemu-img missing")


class Block:
    """A block layer, its commands, the host it reports to, and qdev over it (for
    the block devices)."""

    def __init__(self, *, seed: int = 7, state: str = "running") -> None:
        self.host = RecordingHost(state)
        self.layer = BlockLayer.create(self.host, seed=seed)
        self.cmds = BlockCommands(self.layer)
        self.qdev = Qdev(block=DeviceBackends(self.layer))
        self.vnc = VncDisplays()
        self.change = ChangeCommand(self.layer, lambda: self.vnc)

    # -- commands by wire name ----------------------------------------------------------

    def qmp(self, command: str, /, **args: Any) -> Any:
        """Call a handler the way the dispatcher does (wire names to snake_case; a
        boxed command gets the arguments as one value)."""
        from schema.handlers import collect_handlers

        table = collect_handlers(self.cmds, self.change)
        if command in boxed_commands():
            return table[command](dict(args))
        return table[command](**{k.replace("-", "_"): v for k, v in args.items()})

    def error(self, command: str, /, **args: Any) -> tuple[str, str]:
        """The (class, desc) a command fails with."""
        try:
            self.qmp(command, **args)
        except QMPError as e:
            return e.error_class, e.desc
        raise AssertionError(f"{command} succeeded")

    def add(self, **options: Any) -> None:
        """blockdev-add with wire-named options."""
        self.cmds.blockdev_add(dict(options))

    def drive(self, spec: str, **kw: Any) -> block_drive.DriveResult:
        """-drive with QEMU's `key=value,...` text (no commas inside values)."""
        pairs = [tuple(item.split("=", 1)) for item in spec.split(",") if item]
        return block_drive.add_drive(self.layer, [(k, v) for k, v in pairs], **kw)

    def device(self, driver: str, **props: str) -> Any:
        return attach_device(self.qdev, driver, props)

    def events(self) -> list[tuple[str, Any]]:
        return self.host.take_events()

    def block(self, device: str) -> dict[str, Any]:
        for info in self.qmp("query-block"):
            if info["device"] == device:
                return dict(info)
        raise KeyError(device)

    def node(self, name: str) -> dict[str, Any]:
        for info in self.qmp("query-named-block-nodes"):
            if info["node-name"] == name:
                return dict(info)
        raise KeyError(name)


def create_image(filename: str, fmt: str, size: int, **kw: Any) -> None:
    """`blockdev.image.file.create_image` at a fixed time (2017-12-13, QEMU 2.11.0's
    release) with identifiers from a seeded random source."""
    kw.setdefault("now", 1513123200.0)
    kw.setdefault("rng", random.Random(11))
    image_file.create_image(filename, fmt, size, **kw)


@functools.cache
def boxed_commands() -> frozenset[str]:
    from schema import load_schema

    return frozenset(n for n, c in load_schema().commands.items() if c.boxed)


def qemu_img(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, check=check)


def qemu_img_info(path: Path, *extra: str) -> Any:
    return json.loads(qemu_img("info", "--output=json", *extra, str(path)).stdout)


def make_image(path: Path, fmt: str, size: str = "16M", *opts: str) -> Path:
    qemu_img("create", "-f", fmt, *opts, str(path), size)
    return path


def fails(text: str) -> Any:
    """pytest.raises for a QMPError whose desc is exactly `text`."""
    return pytest.raises(QMPError, match="^" + re.escape(text) + "$")


def expect_error(fn: Callable[[], Any]) -> tuple[str, str]:
    try:
        fn()
    except QMPError as e:
        return e.error_class, e.desc
    raise AssertionError("no error")
