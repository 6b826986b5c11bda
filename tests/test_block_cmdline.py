"""`-drive`, `-blockdev` and the block side of `-device`: QEMU 2.11's drive_new and
blockdev_init semantics (legacy ids, interfaces, media, error policies, options)
and the device checks of parse_drive and the device models' realize.

Each test pins the function its docstring names [blockdev.c drive_new,
blockdev_init; hw/core/qdev-properties-system.c parse_drive; hw/ide/qdev.c,
hw/ide/core.c, hw/block/virtio-blk.c, hw/scsi/scsi-disk.c, hw/block/fdc.c].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from blockdev import drive as block_drive
from blockdev.options import flatten
from devices import board, qdev
from tests.test_block_support import Block, fails, make_image, needs_qemu_img


@pytest.fixture
def b() -> Block:
    return Block()


# --- legacy ids and interfaces -------------------------------------------------------------


@pytest.mark.parametrize(("spec", "name"), [
    ("driver=null-co", "ide0-hd0"),
    ("driver=null-co,media=cdrom", "ide0-cd0"),
    ("driver=null-co,if=ide,index=3", "ide1-hd1"),
    ("driver=null-co,if=scsi,unit=2", "scsi0-hd2"),
    ("driver=null-co,if=floppy", "floppy0"),
    ("driver=null-co,if=virtio", "virtio0"),
    ("driver=null-co,if=pflash", "pflash0"),
    ("driver=null-co,if=sd", "sd0"),
    ("driver=null-co,if=none", "none0"),
    ("driver=null-co,if=none,media=cdrom", "none0"),
])
def test_legacy_ids(b: Block, spec: str, name: str) -> None:
    """drive_new: `<if><bus><media><unit>` for ide/scsi, `<if><media><unit>` without
    a bus geometry; -cd/-hd only for ide and scsi."""
    assert b.drive(spec).blk.name == name


def test_units_fill_up_then_the_next_bus(b: Block) -> None:
    """drive_new: without unit/index, the first free unit, wrapping to the next bus
    at if_max_devs (2 for IDE)."""
    names = [b.drive("driver=null-co").blk.name for _ in range(3)]
    assert names == ["ide0-hd0", "ide0-hd1", "ide1-hd0"]


def test_default_interface_is_the_machines(b: Block) -> None:
    """block_default_type: pc's is IDE; another machine passes its own."""
    assert b.drive("driver=null-co", default_if="scsi").dinfo.type == "scsi"


def test_virtio_drive_implies_a_device(b: Block) -> None:
    """drive_new: if=virtio adds `-device virtio-blk-pci,drive=<id>[,addr=]`."""
    result = b.drive("driver=null-co,if=virtio,addr=0x6")
    assert result.implied_device == (("driver", "virtio-blk-pci"), ("drive", "virtio0"),
                                     ("addr", "0x6"))


def test_board_creates_ide_and_floppy_devices(b: Block) -> None:
    """pc_init1: floppies first, then IDE; their qdev is the canonical path
    (iotests 186: `/machine/unattached/device[N]`), N counting every board device
    without a parent before them (hw/core/qdev.c device_set_realized): on a pc
    without default devices the floppy follows isa-fdc (16), the disks piix3-ide
    (18)."""
    b.drive("driver=null-co")
    b.drive("driver=null-co,media=cdrom")
    b.drive("driver=null-co,if=floppy")
    assert [(d.drive, d.driver) for d in board.board_drives(b.qdev)] == [
        ("floppy0", "floppy"), ("ide0-hd0", "ide-hd"), ("ide0-cd1", "ide-cd")]
    board.create_board_devices(b.qdev)
    assert [(i["device"], i["qdev"]) for i in b.qmp("query-block")] == [
        ("ide0-hd0", "/machine/unattached/device[19]"),
        ("ide0-cd1", "/machine/unattached/device[20]"),
        ("floppy0", "/machine/unattached/device[17]")]


@pytest.mark.parametrize(("spec", "message"), [
    ("if=foo", "unsupported bus type 'foo'"),
    ("media=tape", "'tape' invalid media"),
    ("cyls=0,heads=1,secs=1", "invalid physical cyls number"),
    ("cyls=1,heads=0,secs=1", "invalid physical heads number"),
    ("cyls=1,heads=1,secs=0", "invalid physical secs number"),
    ("trans=lba", "'lba' trans must be used with cyls, heads and secs"),
    ("cyls=1,heads=1,secs=1,trans=odd", "'odd' invalid translation type"),
    ("media=cdrom,cyls=1,heads=1,secs=1", "CHS can't be set with media=cdrom"),
    ("index=1,unit=0", "index cannot be used with bus and unit"),
    ("if=ide,unit=2", "unit 2 too big (max is 1)"),
    ("if=none,addr=0x5", "addr is not supported by this bus type"),
    ("if=floppy,werror=stop", "werror is not supported by this bus type"),
    ("if=sd,rerror=stop", "rerror is not supported by this bus type"),
    ("if=none,werror=odd", "'odd' invalid write error action"),
    ("if=none,rerror=enospc", "'enospc' invalid read error action"),
    ("if=none,cache=fast", "invalid cache option"),
    ("if=none,aio=fast", "invalid aio option"),
    ("if=none,detect-zeroes=maybe", "Invalid parameter 'maybe'"),
    ("if=none,snapshot=yes", "Parameter 'snapshot' expects 'on' or 'off'"),
    ("if=none,bus=x", "Parameter 'bus' expects a number"),
    ("if=none,iops=10,iops_rd=5", "bps/iops/max total values and read/write values "
                                  "cannot be used at the same time"),
    ("if=none,stats-intervals.0=x", "Invalid interval length: x"),
    ("if=none,size=inf", "Value 'inf' is out of range for parameter 'size'"),
    ("if=none,size=1.5", "Parameter 'size' expects a non-negative number below 2^64"),
    ("if=none,latency-ns=1_000", "Parameter 'latency-ns' expects a number"),
])
def test_drive_errors(b: Block, spec: str, message: str) -> None:
    """drive_new / blockdev_init / extract_common_blockdev_options messages."""
    with fails(message):
        b.drive("driver=null-co," + spec)


def test_drive_with_same_bus_and_unit(b: Block) -> None:
    """drive_new: `drive with bus=%d, unit=%d (index=%d) exists`."""
    b.drive("driver=null-co,if=ide,bus=0,unit=1")
    with fails("drive with bus=0, unit=1 (index=-1) exists"):
        b.drive("driver=null-co,if=ide,bus=0,unit=1")


def test_media_cdrom_is_read_only(b: Block) -> None:
    """drive_new: media=cdrom forces read-only."""
    b.drive("driver=null-co,if=none,id=cd,media=cdrom")
    assert b.block("cd")["inserted"]["ro"] is True


def test_copy_on_read_dropped_on_read_only_drive(b: Block) -> None:
    """drive_new: copy-on-read on a read-only drive is disabled with a warning."""
    result = b.drive("driver=null-co,if=none,id=d0,copy-on-read=on,readonly=on")
    assert result.warnings == ("disabling copy-on-read on read-only drive",)
    assert b.layer.find_node(b.block("d0")["inserted"]["node-name"]).open_flags \
        .copy_on_read is False  # type: ignore[union-attr]


def test_error_policies_and_io_status(b: Block) -> None:
    """blk_iostatus_is_enabled: a device enables it, the policy must be able to stop;
    rerror=report/werror=report hides io-status."""
    b.drive("driver=null-co,if=none,id=d0")
    b.drive("driver=null-co,if=none,id=d1,werror=report,rerror=report")
    b.device("virtio-blk-pci", drive="d0")
    b.device("virtio-blk-pci", drive="d1")
    assert b.block("d0")["io-status"] == "ok"
    assert "io-status" not in b.block("d1")


def test_device_error_policy_overrides_drive(b: Block) -> None:
    """blkconf_apply_backend_options: the device's werror (not auto) wins."""
    b.drive("driver=null-co,if=none,id=d0,werror=report,rerror=report")
    b.device("virtio-blk-pci", drive="d0", werror="stop")
    assert b.block("d0")["io-status"] == "ok"


def test_write_cache_property(b: Block) -> None:
    """blkconf_apply_backend_options: write-cache=off sets the BlockBackend's WCE."""
    b.drive("driver=null-co,if=none,id=d0")
    b.device("virtio-blk-pci", drive="d0", **{"write-cache": "off"})
    assert b.block("d0")["inserted"]["cache"]["writeback"] is False


@needs_qemu_img
def test_snapshot_on_uses_a_temporary_overlay(b: Block, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """bdrv_append_temp_snapshot: snapshot=on opens the image read-only under a
    temporary qcow2 overlay (in $TMPDIR), deleted when the drive goes away."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    img = make_image(tmp_path / "disk.qcow2", "qcow2")
    b.drive(f"file={img},if=none,id=d0,snapshot=on")
    inserted = b.block("d0")["inserted"]
    assert inserted["backing_file"] == str(img)
    overlay = inserted["file"]
    assert os.path.dirname(overlay) == str(tmp_path) and os.path.exists(overlay)
    assert inserted["image"]["backing-image"]["filename"] == str(img)
    b.layer.close_all()
    assert not os.path.exists(overlay)


def test_json_filename_on_the_command_line(b: Block) -> None:
    """parse_json_filename: `file=json:{...}` gives the options."""
    block_drive.add_drive(b.layer, [("file", 'json:{"driver": "null-co", "size": 4096}'),
                                ("if", "none"), ("id", "d0")])
    assert b.block("d0")["inserted"]["image"]["virtual-size"] == 4096


@pytest.mark.parametrize(("filename", "message"), [
    ("json:{oops", "Could not parse the JSON options"),
    ("json:{]", "Could not parse the JSON options: JSON parse error, key is not a string "
                "in object"),
    ('json:{"a":' + "[" * 1100 + "]" * 1100 + "}",
     "Could not parse the JSON options: JSON parse error, expecting value"),
    ('json:} {"driver": "null-co"}', "JSON parse error, expecting value"),
    ("json:[1]", "Invalid JSON object given"),
])
def test_json_filename_errors(b: Block, filename: str, message: str) -> None:
    """block.c parse_json_filename over qobject_from_json: no value and no message
    (input ended inside a value, or past the nesting limit) is `Could not parse the
    JSON options`; a parser message is prefixed with it; a first error sticks even when
    a later value parses (then unprefixed, as parse_json_protocol passes it on); a
    value that is not an object is `Invalid JSON object given`."""
    with fails(message):
        block_drive.add_drive(b.layer, [("file", filename), ("if", "none")])


def test_flatten_deeply_nested_options() -> None:
    """qdict_flatten, as parse_json_filename applies it to what it read: a value nested
    as deep as the JSON reader allows flattens to dotted keys (without recursion)."""
    inner: dict[str, object] = {"driver": "null-co", "size": 512, "l": [1, {"x": 2}]}
    for _ in range(1000):
        inner = {"driver": "raw", "file": inner}
    flat = flatten(inner)
    prefix = "file." * 1000
    assert flat[prefix + "size"] == 512
    assert (flat[prefix + "l.0"], flat[prefix + "l.1.x"]) == (1, 2)
    assert list(flat)[:2] == ["driver", "file.driver"]


def test_protocol_prefix(b: Block) -> None:
    """bdrv_find_protocol: `null-co://` selects the protocol driver by prefix."""
    block_drive.add_drive(b.layer, [("file", "null-co://"), ("format", "raw"), ("if", "none"),
                                ("id", "d0")])
    inserted = b.block("d0")["inserted"]
    assert (inserted["drv"], inserted["file"]) == ("raw", "null-co://")


def test_unknown_protocol(b: Block) -> None:
    """bdrv_find_protocol: `Unknown protocol '%s'`."""
    with fails("Unknown protocol 'gopher'"):
        block_drive.add_drive(b.layer, [("file", "gopher://x/y"), ("format", "raw"),
                                    ("if", "none")])


def test_nbd_filename(b: Block) -> None:
    """nbd_parse_filename and nbd_refresh_filename: the nbd:// name round-trips;
    the server is not contacted (simulated)."""
    block_drive.add_drive(b.layer, [("file", "nbd://127.0.0.1:10809/exp"), ("format", "raw"),
                                ("if", "none"), ("id", "d0")])
    image = b.block("d0")["inserted"]["image"]
    assert image["filename"] == "nbd://127.0.0.1:10809/exp"


# --- devices ---------------------------------------------------------------------------------


def test_device_drive_not_found(b: Block) -> None:
    """parse_drive: `Property '%s.%s' can't find value '%s'`, naming the virtio device
    the proxy forwards `drive` to (devices.md §2.2)."""
    with fails("Property 'virtio-blk-device.drive' can't find value 'zz'"):
        b.device("virtio-blk-pci", drive="zz")


def test_drive_already_in_use(b: Block) -> None:
    """parse_drive: a second device on an if=none drive."""
    b.drive("driver=null-co,if=none,id=d0")
    b.device("virtio-blk-pci", drive="d0")
    with fails("Drive 'd0' is already in use by another device"):
        b.device("virtio-blk-pci", drive="d0")


def test_drive_connected_automatically(b: Block) -> None:
    """parse_drive: a drive the board connected (if=ide) cannot take a -device."""
    b.drive("driver=null-co")
    board.create_board_devices(b.qdev)
    with fails("Drive 'ide0-hd0' is already in use because it has been automatically "
               "connected to another device (did you need 'if=none' in the drive "
               "options?)"):
        b.device("virtio-blk-pci", drive="ide0-hd0")


@pytest.mark.parametrize(("driver", "message"), [
    ("ide-hd", "No drive specified"),
    ("virtio-blk-pci", "drive property not set"),
    ("scsi-hd", "drive property not set"),
])
def test_device_without_drive(b: Block, driver: str, message: str) -> None:
    """ide_dev_initfn, virtio_blk_device_realize, scsi_realize."""
    with fails(message):
        b.device(driver)


@pytest.mark.parametrize("driver", ["ide-hd", "virtio-blk-pci", "scsi-hd"])
def test_fixed_disk_needs_media(b: Block, driver: str) -> None:
    """`Device needs media, but drive is empty`."""
    b.drive("if=none,id=d0")
    with fails("Device needs media, but drive is empty"):
        b.device(driver, drive="d0")


def test_ide_hd_refuses_read_only_drive(b: Block) -> None:
    """ide_init_drive: `Can't use a read-only drive`."""
    b.drive("driver=null-co,if=none,id=d0,readonly=on")
    with fails("Can't use a read-only drive"):
        b.device("ide-hd", drive="d0")


def test_floppy_refuses_error_policies(b: Block) -> None:
    """floppy_drive_realize: fdc takes neither werror nor rerror."""
    b.drive("driver=null-co,if=none,id=d0,werror=stop")
    with fails("fdc doesn't support drive option werror"):
        b.device("floppy", drive="d0")
    b.drive("driver=null-co,if=none,id=d1,rerror=stop")
    with fails("fdc doesn't support drive option rerror"):
        b.device("floppy", drive="d1")


def test_unplug_removes_auto_deleted_drive(b: Block) -> None:
    """blockdev_mark_auto_del / blockdev_auto_del: device_del takes its -drive."""
    b.drive("driver=null-co,if=none,id=d0")
    dev = b.device("virtio-blk-pci", drive="d0", id="vd0")
    qdev.mark_auto_del(b.qdev, dev)
    qdev.detach_device(b.qdev, dev)
    assert b.qmp("query-block") == []
    assert b.layer.nodes == []


def test_unplug_device_on_node_keeps_node(b: Block) -> None:
    """release_drive: the anonymous BlockBackend goes, the node stays."""
    b.add(driver="null-co", **{"node-name": "n0"})
    dev = b.device("virtio-blk-pci", drive="n0")
    qdev.detach_device(b.qdev, dev)
    assert b.qmp("query-block") == []
    assert [n["node-name"] for n in b.qmp("query-named-block-nodes")] == ["n0"]
    b.qmp("blockdev-del", **{"node-name": "n0"})


@needs_qemu_img
def test_aio_native_needs_cache_direct(b: Block, tmp_path: Path) -> None:
    """raw_open_common: aio=native (from -drive's flag) without cache.direct=on."""
    img = make_image(tmp_path / "img.raw", "raw")
    with fails("aio=native was specified, but it requires cache.direct=on, which was not "
               "specified."):
        b.drive(f"file={img},format=raw,if=none,id=d0,aio=native")
    b.drive(f"file={img},format=raw,if=none,id=d1,aio=native,cache=none")
    assert b.block("d1")["inserted"]["cache"]["direct"] is True


def test_hmp_drive_del(b: Block) -> None:
    """hmp_drive_del: the drive loses medium and name; its device stays attached to an
    anonymous BlockBackend; an unknown id is reported."""
    b.drive("driver=null-co,if=none,id=d0")
    b.device("virtio-blk-pci", drive="d0", id="vd0")
    block_drive.drive_del(b.layer, "d0")
    assert b.qmp("query-block") == [{
        "device": "", "qdev": "/machine/peripheral/vd0/virtio-backend", "type": "unknown",
        "removable": False, "locked": False}]
    assert b.layer.nodes == []
    with fails("Device 'd0' not found"):
        block_drive.drive_del(b.layer, "d0")


def test_snapshot_on_without_a_temporary_directory(b: Block, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """bdrv_append_temp_snapshot: when get_tmp_filename cannot make the file in
    $TMPDIR, `Could not get temporary filename: <strerror>` [block.c]."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    with fails("Could not get temporary filename: No such file or directory"):
        b.drive("driver=null-co,if=none,id=d0,snapshot=on")
    assert b.layer.blk_by_name("d0") is None


def test_snapshot_overlay_goes_through_the_image_edge(b: Block, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary overlay of snapshot=on is created and removed by the layer's
    ImageIO (the image edge), stamped with the host's wall clock and random source,
    not by file calls in the model (issue 7)."""
    from blockdev.image.io import ImageIO

    calls: list[tuple[str, object]] = []

    class Recording(ImageIO):
        def create_temp_overlay(self, size: int, *, now: float, rng: Any) -> str:
            calls.append(("create", (size, now, rng)))
            return super().create_temp_overlay(size, now=now, rng=rng)

        def remove_temporary(self, path: str) -> None:
            calls.append(("remove", path))
            super().remove_temporary(path)

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    b.layer.io = Recording()
    b.drive("driver=null-co,size=1048576,if=none,id=d0,snapshot=on")
    overlay = b.block("d0")["inserted"]["file"]
    assert calls == [("create", (1 << 20, b.host.clock.wall(), b.host.rng))]
    b.layer.close_all()
    assert calls[1:] == [("remove", overlay)]
    assert not os.path.exists(overlay)
