"""qdev's side of block devices: properties, naming, and its reach into the block
layer only through `devices.backends.BlockBackends`.

Pins qdev-monitor.c qdev_device_add (properties from -device strings through
object_property_parse's string input visitor: qapi/string-input-visitor.c
parse_type_bool for booleans, qapi/qapi-visit-core.c input_type_enum for enums)
and the naming of devices without an id
(/machine/peripheral-anon/device[N]). The realize checks and their texts are
pinned by tests/test_block_cmdline.py and tests/test_block_media.py.
"""

from __future__ import annotations

import pytest

from devices.qdev import prop_bool
from tests.test_block_support import Block, fails


@pytest.mark.parametrize(("text", "value"), [
    ("on", True), ("yes", True), ("true", True), ("TRUE", True), ("On", True),
    ("off", False), ("no", False), ("false", False), ("OFF", False),
])
def test_boolean_property_words(text: str, value: bool) -> None:
    """parse_type_bool: on/yes/true and off/no/false, compared with strcasecmp."""
    assert prop_bool("share-rw", text) is value


def test_boolean_property_refused() -> None:
    """parse_type_bool: QERR_INVALID_PARAMETER_TYPE with the property's name."""
    with fails("Invalid parameter type for 'removable', expected: boolean"):
        prop_bool("removable", "maybe")


def test_scsi_hd_removable_yes_has_a_tray() -> None:
    """-device scsi-hd,removable=yes: the string input visitor takes `yes`, and the
    disk gets scsi_disk_removable_block_ops (a tray)."""
    b = Block()
    b.drive("driver=null-co,if=none,id=hd0")
    b.device("scsi-hd", drive="hd0", id="s0", removable="yes")
    assert b.block("hd0")["tray_open"] is False


def test_share_rw_refuses_other_words() -> None:
    """set_bool of share-rw: `Invalid parameter type for 'share-rw', expected: boolean`."""
    b = Block()
    b.drive("driver=null-co,if=none,id=d0")
    with fails("Invalid parameter type for 'share-rw', expected: boolean"):
        b.device("virtio-blk-pci", drive="d0", **{"share-rw": "1"})


def test_devices_without_id_are_numbered_in_peripheral_anon() -> None:
    """qdev_set_id with no id: /machine/peripheral-anon/device[N], N counting the
    machine's anonymous devices (query-block's qdev is then that path)."""
    b = Block()
    b.drive("driver=null-co,if=none,id=d0")
    b.drive("driver=null-co,if=none,id=d1")
    b.device("scsi-hd", drive="d0")
    b.device("scsi-hd", drive="d1")
    assert [b.block(d)["qdev"] for d in ("d0", "d1")] == [
        "/machine/peripheral-anon/device[0]", "/machine/peripheral-anon/device[1]"]


@pytest.mark.parametrize(("prop", "value"), [
    ("rerror", "bogus"), ("werror", "Stop"), ("write-cache", "yes"),
])
def test_enum_property_refused(prop: str, value: str) -> None:
    """set_enum -> input_type_enum: a name the enum (BlockdevOnError, OnOffAuto)
    does not have is QERR_INVALID_PARAMETER with the value."""
    b = Block()
    b.drive("driver=null-co,if=none,id=d0")
    with fails(f"Invalid parameter '{value}'"):
        b.device("virtio-blk-pci", drive="d0", **{prop: value})


def test_enum_properties_reach_the_backend() -> None:
    """blkconf_apply_backend_options: rerror/werror other than auto replace the
    drive's policies, write-cache=off clears the write cache."""
    b = Block()
    b.drive("driver=null-co,if=none,id=d0")
    b.device("virtio-blk-pci", drive="d0", rerror="stop", werror="ignore",
             **{"write-cache": "off"})
    blk = b.layer.blk_by_name("d0")
    assert blk is not None
    assert (blk.on_read_error, blk.on_write_error, blk.enable_write_cache) == (
        "stop", "ignore", False)
