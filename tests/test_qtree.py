"""HMP `info qtree` computed from the qdev model (devices/qtree.py), against a real
QEMU 2.11.0's output of the four boards (tests/data/qtree/, see its README) and with
hot-plugged devices [qdev-monitor.c hmp_info_qtree, qbus_print (a bus's devices
newest first), qdev_print (GPIOs, each class's properties from the device's own class
up, the bus's print_dev, child buses newest first), qdev_print_props (`legacy-` values,
the human string output visitor); hw/pci/pci.c pcibus_dev_print; hw/core/sysbus.c
sysbus_dev_print; hw/isa/isa-bus.c isabus_dev_print; hw/usb/bus.c usb_bus_dev_print].
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.qtree import print_value, size_to_str
from tests.emulator import SyncVm

DATA = Path(__file__).parent / "data" / "qtree"


def hmp(vm: SyncVm, line: str) -> str:
    reply = vm.execute({"execute": "human-monitor-command",
                        "arguments": {"command-line": line}})
    assert reply is not None and "return" in reply, reply
    return str(reply["return"])


def recorded(variant: str) -> str:
    return (DATA / f"{variant}.txt").read_bytes().decode()


def board(variant: str, *extra: str) -> SyncVm:
    """The recording's command line: -machine pc|q35 -m 128 -display none -S
    [-nodefaults]."""
    kind, defaults = variant.split("-")
    argv = ["-machine", kind, "-m", "128", "-display", "none", "-S"]
    if defaults == "nodefaults":
        argv.append("-nodefaults")
    return SyncVm([*argv, *extra])


@pytest.mark.parametrize("variant", ["pc-defaults", "pc-nodefaults", "q35-defaults",
                                     "q35-nodefaults"])
def test_the_recorded_boards(variant: str) -> None:
    """Byte for byte what QEMU 2.11.0 printed for the same command line (CR LF line
    ends, as the monitor writes them)."""
    assert hmp(board(variant), "info qtree") == recorded(variant)


def _block(text: str, start: str) -> tuple[str, str]:
    """The lines of the device starting with `start` (it and everything indented
    deeper), and the text without them."""
    lines = text.split("\r\n")
    first = lines.index(start)
    depth = len(start) - len(start.lstrip())
    end = first + 1
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > depth:
        end += 1
    return ("\r\n".join(lines[first:end]), "\r\n".join(lines[:first] + lines[end:]))


def test_hot_plugged_virtio_net_pci() -> None:
    """device_add virtio-net-pci: the newest device of pci.0, so printed first on it;
    its PCI lines (the first free slot, legacy virtio ids with the virtio device id as
    subsystem: virtio_pci_device_plugged), then its `virtio-bus` (virtio_pci_bus_new
    names it) with the virtio-net-device. Everything else is the recorded board."""
    vm = board("pc-nodefaults")
    assert hmp(vm, "device_add virtio-net-pci,id=n0") == ""
    out = hmp(vm, "info qtree")
    block, rest = _block(out, '      dev: virtio-net-pci, id "n0"')
    assert rest == recorded("pc-nodefaults")
    assert out.index(block) == out.index("      type PCI\r\n") + len("      type PCI\r\n")
    lines = block.split("\r\n")
    # the proxy's own class first (virtio-pci.c virtio_net_properties), then
    # virtio-pci's, then pci-device's, with their DEFINE_PROP defaults and the class's
    # efi-virtio.rom (242 176 bytes: a 256 KiB BAR 6)
    assert lines[:32] == [
        '      dev: virtio-net-pci, id "n0"',
        "        ioeventfd = true",
        "        vectors = 3 (0x3)",
        "        virtio-pci-bus-master-bug-migration = false",
        '        disable-legacy = "auto"',
        "        disable-modern = false",
        "        migrate-extra = true",
        "        modern-pio-notify = false",
        "        x-disable-pcie = false",
        "        page-per-vq = false",
        "        x-ignore-backend-features = false",
        "        ats = false",
        "        x-pcie-deverr-init = true",
        "        x-pcie-lnkctl-init = true",
        "        x-pcie-pm-init = true",
        "        addr = 02.0",
        '        romfile = "efi-virtio.rom"',
        "        rombar = 1 (0x1)",
        "        multifunction = false",
        "        command_serr_enable = true",
        "        x-pcie-lnksta-dllla = true",
        "        x-pcie-extcap-init = true",
        "        class Ethernet controller, addr 00:02.0, pci id 1af4:1000 (sub 1af4:0001)",
        "        bar 0: i/o at 0xffffffffffffffff [0x1e]",
        "        bar 1: mem at 0xffffffffffffffff [0xffe]",
        "        bar 4: mem at 0xffffffffffffffff [0x3ffe]",
        "        bar 6: mem at 0xffffffffffffffff [0x3fffe]",
        "        bus: virtio-bus",
        "          type virtio-pci-bus",
        '          dev: virtio-net-device, id ""',
        "            csum = true",
        "            guest_csum = true"]
    # virtio-net.c virtio_net_properties, then virtio.c's common features; the MAC
    # is the first default one (qemu_macaddr_default_if_unset), shared with the proxy;
    # no netdev, so no hub peer: print_vlan's "<null>"
    inner = [line.strip() for line in lines[30:]]
    assert inner[19:26] == ["ctrl_guest_offloads = true", "mq = false",
                            'mac = "52:54:00:12:34:56"', "vlan = <null>", 'netdev = ""',
                            "x-txtimer = 150000 (0x249f0)", "x-txburst = 256 (0x100)"]
    assert inner[-6:] == ["x-mtu-bypass-backend = true", "indirect_desc = true",
                          "event_idx = true", "notify_on_empty = true", "any_layout = true",
                          "iommu_platform = false"]


def test_hot_plugged_usb_devices() -> None:
    """-usb's piix3-usb-uhci at 01.2, and usb-tablet then usb-kbd by device_add: the
    keyboard would take the last free port, so usb_claim_port chains a hub on first
    (the keyboard is on the bus already: qdev_set_parent_bus precedes realize, so the
    hub is the newer); newest first on usb-bus.0, each with usb_bus_dev_print's line (the address the
    guest has not set yet is 0; `port` stays the unset property)."""
    vm = board("pc-nodefaults", "-usb")
    hmp(vm, "device_add usb-tablet,id=t1")
    hmp(vm, "device_add usb-kbd,id=k1")
    out = hmp(vm, "info qtree")
    uhci, rest = _block(out, '      dev: piix3-usb-uhci, id ""')
    assert rest == recorded("pc-nodefaults")
    lines = uhci.split("\r\n")
    assert "        class USB controller, addr 00:01.2, pci id 8086:7020 (sub 1af4:1100)" \
        in lines
    bus = lines.index("        bus: usb-bus.0")
    assert lines[bus + 1] == "          type usb-bus"
    devs = [line.strip() for line in lines[bus:] if line.startswith("          dev: ")]
    assert devs == ['dev: usb-hub, id ""', 'dev: usb-kbd, id "k1"', 'dev: usb-tablet, id "t1"']
    assert [line.strip() for line in lines if line.strip().startswith("addr 0.0")] == [
        "addr 0.0, port 2, speed 12, name QEMU USB Hub, attached",
        "addr 0.0, port 2.1, speed 12, name QEMU USB Keyboard, attached",
        "addr 0.0, port 1, speed 12, name QEMU USB Tablet, attached"]
    tablet, _ = _block(uhci, '          dev: usb-tablet, id "t1"')
    assert '            port = ""' in tablet.split("\r\n")


def test_a_hot_plugged_e1000_has_its_rom_bar() -> None:
    """pci_add_option_rom: efi-e1000.rom (240 128 bytes in 2.11's pc-bios) makes
    BAR 6 of 256 KiB, as on the recorded pc board's e1000."""
    vm = board("pc-nodefaults")
    hmp(vm, "device_add e1000,id=e")
    block, _ = _block(hmp(vm, "info qtree"), '      dev: e1000, id "e"')
    # its own backends, not the recorded board NIC's: no netdev, no hub (print_vlan)
    assert block.split("\r\n")[1:4] == ['        mac = "52:54:00:12:34:56"',
                                          "        vlan = <null>", '        netdev = ""']
    assert block.split("\r\n")[-4:] == [
        "        class Ethernet controller, addr 00:02.0, pci id 8086:100e (sub 1af4:1100)",
        "        bar 0: mem at 0xffffffffffffffff [0x1fffe]",
        "        bar 1: i/o at 0xffffffffffffffff [0x3e]",
        "        bar 6: mem at 0xffffffffffffffff [0x3fffe]"]


def test_machine_none_prints_the_empty_main_bus() -> None:
    """sysbus_get_default always exists: -machine none prints its bus alone."""
    vm = SyncVm(["-machine", "none", "-S"])
    assert hmp(vm, "info qtree") == "bus: main-system-bus\r\n  type System\r\n"


@pytest.mark.parametrize(("value", "text"), [
    (0, "0 B"), (999, "999 B"), (1023, "0.999 KiB"), (1000, "0.977 KiB"), (2 << 30, "2 GiB"),
    (128 << 20, "128 MiB"), (1536, "1.5 KiB"), (32 << 30, "32 GiB")])
def test_size_to_str(value: int, text: str) -> None:
    """util/cutils.c size_to_str: %0.3g of the value in the unit whose integer part
    stays under 1000."""
    assert size_to_str(value) == text


@pytest.mark.parametrize(("type_", "value", "text"), [
    ("uint64", 0xFFFFFFFFFFFFFFFF, "-1 (0xffffffffffffffff)"),
    ("int32", -1, "-1 (0xffffffffffffffff)"), ("uint8", 0, "0 (0x0)"),
    ("size", 0, "0 (0 B)"), ("bool", True, "true"), ("str", "", '""'),
    ("LostTickPolicy", "discard", '"discard"')])
def test_print_value(type_: str, value: object, text: str) -> None:
    """The human string output visitor: uint64 printed through int64 (2.11's FIXME
    in print_type_uint64), sizes with size_to_str, strings and enums quoted."""
    assert print_value(type_, value) == text


def test_an_unplugged_usb_device_leaves_the_tree() -> None:
    """USB unplug is at once (qdev_simple_device_unplug_cb): the next info qtree is
    the one before device_add."""
    vm = board("pc-nodefaults", "-usb")
    before = hmp(vm, "info qtree")
    hmp(vm, "device_add usb-tablet,id=t")
    assert 'dev: usb-tablet, id "t"' in hmp(vm, "info qtree")
    assert hmp(vm, "device_del t") == ""
    assert hmp(vm, "info qtree") == before


def test_hot_plugged_virtio_blk_pci(tmp_path: Path) -> None:
    """virtio-blk-pci with a drive: class 0100 (SCSI controller), subsystem 0002 (the
    virtio block id), its virtio-blk-device with DEFINE_BLOCK_PROPERTIES' defaults
    (discard_granularity -1) and an unset iothread link printed as "". (cyls/heads/
    secs, which blkconf_geometry guesses from the image, are not checked.)"""
    import subprocess

    image = tmp_path / "d.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    vm = board("pc-nodefaults")
    hmp(vm, f"drive_add 0 if=none,id=d0,file={image}")
    hmp(vm, "device_add virtio-blk-pci,drive=d0,id=vb")
    block, rest = _block(hmp(vm, "info qtree"), '      dev: virtio-blk-pci, id "vb"')
    assert rest == recorded("pc-nodefaults")
    lines = [line.strip() for line in block.split("\r\n")]
    assert lines[1:4] == ["class = 0 (0x0)", "ioeventfd = true", "vectors = 2 (0x2)"]
    assert "class SCSI controller, addr 00:02.0, pci id 1af4:1001 (sub 1af4:0002)" in lines
    inner = lines[lines.index('dev: virtio-blk-device, id ""') + 1:]
    assert inner[:10] == ['drive = "d0"', "logical_block_size = 512 (0x200)",
                          "physical_block_size = 512 (0x200)", "min_io_size = 0 (0x0)",
                          "opt_io_size = 0 (0x0)",
                          "discard_granularity = 4294967295 (0xffffffff)",
                          'write-cache = "auto"', "share-rw = false", 'rerror = "auto"',
                          'werror = "auto"']
    assert inner[13:19] == ['serial = ""', "config-wce = true", "scsi = false",
                            "request-merging = true", "num-queues = 1 (0x1)",
                            'iothread = ""']
