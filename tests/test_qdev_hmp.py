"""The human monitor's device commands with 2.11's texts: info pci (hmp.c
hmp_info_pci_device), info usb (hw/usb/bus.c hmp_info_usb), info qom-tree (hmp.c
print_qom_composition), device_add/device_del, qom-list/qom-set (hmp.c),
usb_add/usb_del (vl.c hmp_usb_add, usb_device_add: only with -usb).
"""

from __future__ import annotations

from tests.emulator import SyncVm


def hmp(vm: SyncVm, line: str) -> str:
    reply = vm.execute({"execute": "human-monitor-command",
                        "arguments": {"command-line": line}})
    assert reply is not None and "return" in reply, reply
    return str(reply["return"])


def test_info_pci_of_a_hot_plugged_nic() -> None:
    """The BARs are unmapped (no firmware ran under -S): PCI_BAR_UNMAPPED printed as
    QEMU prints it, the end wrapping around."""
    vm = SyncVm(["-machine", "pc", "-nodefaults", "-S"])
    assert hmp(vm, "device_add e1000,id=n0") == ""
    out = hmp(vm, "info pci")
    assert out.startswith("  Bus  0, device   0, function 0:\r\n"
                          "    Host bridge: PCI device 8086:1237\r\n"
                          '      id ""\r\n')
    assert out.endswith("  Bus  0, device   2, function 0:\r\n"
                        "    Ethernet controller: PCI device 8086:100e\r\n"
                        "      IRQ 0.\r\n"
                        "      BAR0: 32 bit memory at 0xffffffffffffffff [0x0001fffe].\r\n"
                        "      BAR1: I/O at 0xffffffffffffffff [0x003e].\r\n"
                        '      id "n0"\r\n')


def test_device_del_and_qom_commands() -> None:
    vm = SyncVm(["-machine", "pc", "-nodefaults", "-S"])
    hmp(vm, "device_add virtio-net-pci,id=n0")
    assert "legacy-addr (str)\r\n" in hmp(vm, "qom-list /machine/peripheral/n0")
    assert hmp(vm, "qom-set n0 mac 52:54:00:00:00:01") == (
        "Attempt to set property 'mac' on device 'n0' (type 'virtio-net-pci') after it "
        "was realized\r\n")
    assert hmp(vm, "info qom-tree /machine/peripheral") == (
        "/peripheral (container)\r\n"
        "  /n0 (virtio-net-pci)\r\n"
        "    /virtio-bus (virtio-pci-bus)\r\n"
        "    /virtio-backend (virtio-net-device)\r\n")
    assert hmp(vm, "info qom-tree /nosuch") == "Path '/nosuch' could not be resolved.\r\n"
    assert hmp(vm, "device_del n0") == ""
    assert hmp(vm, "device_del n0") == ""


def test_info_usb_and_usb_add() -> None:
    vm = SyncVm(["-machine", "pc", "-nodefaults", "-usb"])
    assert hmp(vm, "usb_add tablet") == \
        "usb_add is deprecated, please use device_add instead\r\n"
    hmp(vm, "device_add usb-kbd,id=k")
    assert hmp(vm, "info usb") == (
        "  Device 0.0, Port 1, Speed 12 Mb/s, Product QEMU USB Tablet\r\n"
        "  Device 0.0, Port 2, Speed 12 Mb/s, Product QEMU USB Hub\r\n"
        "  Device 0.0, Port 2.1, Speed 12 Mb/s, Product QEMU USB Keyboard, ID: k\r\n")


def test_usb_add_without_usb() -> None:
    vm = SyncVm(["-machine", "pc", "-nodefaults"])
    assert hmp(vm, "usb_add tablet") == (
        "usb_add is deprecated, please use device_add instead\r\n"
        "could not add USB device 'tablet'\r\n")
    assert hmp(vm, "info usb") == "USB support not enabled\r\n"
