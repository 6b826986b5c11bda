"""A real management client hot-plugs and unplugs 100 devices in a loop.

The `qemu.qmp` client library from PyPI (written by QEMU's developers) drives the
`qmp-emulator` program over a unix socket the test listens on and passes in (no
real-time wait for the socket). Each round adds a virtio-net-pci, an e1000 and a
usb-tablet, then deletes them and waits for every DEVICE_DELETED, as libvirt does
(../shared/reference/devices.md §2.4: the USB device goes before the reply, the PCI
ones when the guest ejects them; the guest is told to eject at once). After the
loop the QOM tree and the PCI bus are where they started.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from qemu.qmp import QMPClient

from tests.test_program import HANG_GUARD, listening_monitor, spawn  # noqa: F401

ROUNDS = 34  # three devices a round: 102 hot-plugs


async def hotplug_loop(path: str) -> tuple[list[object], list[object], int]:
    qmp = QMPClient("hotplug")
    await qmp.connect(path)

    async def snapshot() -> list[object]:
        return [await qmp.execute("query-pci"),
                await qmp.execute("qom-list", {"path": "/machine/peripheral"}),
                await qmp.execute("qom-list", {"path": "/machine/unattached"}),
                await qmp.execute("query-block")]

    before = await snapshot()
    deleted = 0
    with qmp.listener("DEVICE_DELETED") as listener:
        for n in range(ROUNDS):
            for driver, ident in (("virtio-net-pci", f"net{n}"), ("e1000", f"nic{n}"),
                                  ("usb-tablet", f"tab{n}")):
                await qmp.execute("device_add", {"driver": driver, "id": ident})
            for ident in (f"net{n}", f"nic{n}", f"tab{n}"):
                await qmp.execute("device_del", {"id": ident})
            gone: set[str] = set()
            while len(gone) < 3:
                event = await asyncio.wait_for(listener.get(), HANG_GUARD)
                deleted += 1
                if "device" in event["data"]:
                    gone.add(event["data"]["device"])
            assert gone == {f"net{n}", f"nic{n}", f"tab{n}"}
    after = await snapshot()
    await qmp.disconnect()
    return before, after, deleted


def test_a_hundred_devices_come_and_go(spawn, tmp_path: Path) -> None:  # noqa: F811
    listener, client, args = listening_monitor(tmp_path / "q.sock")
    client.close()
    proc = spawn("-machine", "pc", "-nodefaults", "-display", "none",
                 "-device", "piix3-usb-uhci,id=uhci", "--emu-behaviour=device-unplug-delay=0",
                 *args, pass_fds=(listener.fileno(),))
    listener.close()
    before, after, deleted = asyncio.run(hotplug_loop(str(tmp_path / "q.sock")))
    assert proc.poll() is None
    assert after == before
    # each virtio-net-pci emits its backend's event too
    assert deleted == ROUNDS * 4
