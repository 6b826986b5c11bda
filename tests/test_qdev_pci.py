"""query-pci of the pc and q35 boards, with and without default devices and with
devices added (hw/pci/pci.c qmp_query_pci: devices in devfn order; slots of the
boards from hw/i386/pc_piix.c and pc_q35.c — the recorded trees' `addr` values;
ids and classes from each model's class_init, see devices/pci.py)."""

from __future__ import annotations

import pytest

from tests.emulator import SyncVm
from tests.test_qdev_hotplug import ok


def layout(vm: SyncVm) -> list[tuple[int, int, int, str]]:
    buses = ok(vm, "query-pci")
    assert [b["bus"] for b in buses] == [0]
    return [(d["slot"], d["function"], d["class_info"]["class"], d["qdev_id"])
            for d in buses[0]["devices"]]


@pytest.mark.parametrize(("argv", "want"), [
    (["-machine", "pc", "-nodefaults"],
     [(0, 0, 0x600, ""), (1, 0, 0x601, ""), (1, 1, 0x101, ""), (1, 3, 0x680, "")]),
    (["-machine", "pc"],
     [(0, 0, 0x600, ""), (1, 0, 0x601, ""), (1, 1, 0x101, ""), (1, 3, 0x680, ""),
      (2, 0, 0x300, ""), (3, 0, 0x200, "")]),
    (["-machine", "q35", "-nodefaults"],
     [(0, 0, 0x600, ""), (31, 0, 0x601, ""), (31, 2, 0x106, ""), (31, 3, 0xC05, "")]),
    (["-machine", "q35"],
     [(0, 0, 0x600, ""), (1, 0, 0x300, ""), (2, 0, 0x200, ""), (31, 0, 0x601, ""),
      (31, 2, 0x106, ""), (31, 3, 0xC05, "")]),
])
def test_boards(argv: list[str], want: list[tuple[int, int, int, str]]) -> None:
    assert layout(SyncVm(argv)) == want


def test_pc_with_added_devices() -> None:
    """-device and device_add take the first free slots; an explicit addr its own."""
    vm = SyncVm(["-machine", "pc", "-device", "virtio-net-pci,id=n1"])
    ok(vm, "device_add", driver="e1000", id="n2", addr="0x10")
    ok(vm, "device_add", driver="virtio-balloon-pci", id="b")
    assert layout(vm)[6:] == [(4, 0, 0x200, "n1"), (5, 0, 0xFF, "b"), (16, 0, 0x200, "n2")]


def test_q35_with_a_root_port() -> None:
    """-device pcie-root-port on q35: the root bus is pcie.0, the port takes slot 3."""
    vm = SyncVm(["-machine", "q35", "-device", "pcie-root-port,id=rp1"])
    assert (3, 0) in [(s, f) for s, f, _c, _i in layout(vm)]
    assert ok(vm, "qom-get", path="rp1", property="parent_bus") == "/machine/q35/pcie.0"
