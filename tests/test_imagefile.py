"""Tests of the block layer's real-file I/O edge (`blockdev.image.file`).

Three kinds:

* images made by Debian's `qemu-img` (7.2) read back and compared with
  `qemu-img info --output=json`, member by member, after removing what 7.2 reports
  and 2.11 did not (`_as_2_11` says where each difference comes from);
* images made by the emulator's writer, accepted by `qemu-img check` and
  `qemu-img info --backing-chain`;
* one small test per QEMU error message, and the lock bytes as seen by real QEMU
  tools.

Every test works inside pytest's tmp_path only.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blockdev.image.file import (
    EmulatorLimitation,
    FileLock,
    ImageError,
    OpenImage,
    Perm,
    Qcow2Specific,
    VmdkSpecific,
    blk_new_open_perms,
    device_perms,
    format_backing_child_perms,
    format_file_child_perms,
    open_image,
    perm_names,
    read_image_facts,
)
from tests.test_block_support import create_image

QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
needs_qemu_img = pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img is not installed")
needs_qemu_io = pytest.mark.skipif(QEMU_IO is None, reason="qemu-io is not installed")
MiB = 1 << 20
GiB = 1 << 30


# --- helpers ------------------------------------------------------------------------


def qemu_img(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert QEMU_IMG is not None
    return subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, check=check)


def qemu_info(path: Path | str, fmt: str | None = None, *extra: str) -> Any:
    args = ["info", "--output=json", *extra]
    if fmt is not None:
        args += ["-f", fmt]
    return json.loads(qemu_img(*args, str(path)).stdout)


def _as_2_11(info: dict[str, Any]) -> dict[str, Any]:
    """Remove from qemu-img 7.2's ImageInfo what QEMU 2.11 did not report:

    * qcow2 `compression-type` (added in 5.1) and `extended-l2` (5.2), and the
      `bitmaps` list (4.0) -- 2.11's ImageInfoSpecificQCow2 has only compat,
      lazy-refcounts, corrupt, refcount-bits and encrypt [qapi/block-core.json];
    * `icount` in snapshots (5.2) -- not in 2.11's SnapshotInfo;
    * vmdk `backing-filename-format` ("vmdk", set by vmdk_parent_open since 5.x) --
      2.11's vmdk_parent_open records only the file name [block/vmdk.c].
    """
    info = json.loads(json.dumps(info))
    spec = info.get("format-specific")
    if spec and spec["type"] == "qcow2":
        for key in ("compression-type", "extended-l2", "bitmaps"):
            spec["data"].pop(key, None)
    for snap in info.get("snapshots", []):
        snap.pop("icount", None)
    if info.get("format") == "vmdk":
        info.pop("backing-filename-format", None)
    info.pop("backing-image", None)
    return info


def assert_same_as_qemu_img(path: Path, fmt: str | None = None, **kw: Any) -> None:
    mine = read_image_facts(str(path), fmt, **kw).as_qapi()
    assert mine == _as_2_11(qemu_info(path, fmt))


QCOW2_HEADER = struct.Struct(">IIQIIQIIQQIIQQQQII")
QCOW2_FIELDS = (
    "magic version backing_file_offset backing_file_size cluster_bits size "
    "crypt_method l1_size l1_table_offset refcount_table_offset "
    "refcount_table_clusters nb_snapshots snapshots_offset incompatible_features "
    "compatible_features autoclear_features refcount_order header_length"
).split()


def qcow2_header(path: Path) -> dict[str, int]:
    raw = path.read_bytes()[: QCOW2_HEADER.size]
    return dict(zip(QCOW2_FIELDS, QCOW2_HEADER.unpack(raw), strict=True))


def patch_qcow2(path: Path, **fields: int) -> None:
    """Overwrite header fields of a qcow2 image in place (a copy in tmp_path)."""
    header = qcow2_header(path)
    header.update(fields)
    data = bytearray(path.read_bytes())
    QCOW2_HEADER.pack_into(data, 0, *(header[name] for name in QCOW2_FIELDS))
    path.write_bytes(bytes(data))


def make(tmp_path: Path, name: str, fmt: str, size: str, *opts: str) -> Path:
    path = tmp_path / name
    qemu_img("create", "-q", "-f", fmt, *opts, str(path), size)
    return path


def make_luks(path: Path, fmt: str, size: str) -> None:
    """qemu-img's PBKDF benchmark sometimes fails in containers ("Unable to get
    accurate CPU usage"); a short iteration time and a few tries work around it."""
    opt = (
        "key-secret=sec0,iter-time=10"
        if fmt == "luks"
        else "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
    )
    for _ in range(10):
        result = qemu_img(
            "create",
            "-q",
            "--object",
            "secret,id=sec0,data=abc",
            "-f",
            fmt,
            "-o",
            opt,
            str(path),
            size,
            check=False,
        )
        if result.returncode == 0:
            return
    pytest.skip(f"qemu-img could not create a {fmt} LUKS image: {result.stderr.strip()}")


def error_of(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(ImageError) as info:
        fn(*args, **kw)
    return info.value.desc


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


# --- reading images qemu-img made ----------------------------------------------------


QCOW2_VARIANTS = [
    pytest.param((), id="v3-default"),
    pytest.param(("-o", "compat=0.10"), id="v2"),
    pytest.param(("-o", "lazy_refcounts=on"), id="lazy-refcounts"),
    pytest.param(("-o", "cluster_size=512"), id="cluster-512"),
    pytest.param(("-o", "cluster_size=2M"), id="cluster-2M"),
    pytest.param(("-o", "refcount_bits=1"), id="refcount-1"),
    pytest.param(("-o", "refcount_bits=64"), id="refcount-64"),
]


@needs_qemu_img
@pytest.mark.parametrize("opts", QCOW2_VARIANTS)
def test_qcow2_facts_match_qemu_img(tmp_path: Path, opts: tuple[str, ...]) -> None:
    """ImageInfo of a qcow2 image as bdrv_query_image_info builds it [block/qapi.c]:
    cluster-size from qcow2_get_info, dirty-flag always false (qcow2_get_info never
    sets is_dirty), format-specific per qcow2_get_specific_info (compat 0.10 images
    report only compat and refcount-bits) [block/qcow2.c]."""
    path = make(tmp_path, "t.qcow2", "qcow2", "1G", *opts)
    assert_same_as_qemu_img(path)


@needs_qemu_img
def test_qcow2_v2_reports_only_compat_and_refcount_bits(tmp_path: Path) -> None:
    """qcow2_get_specific_info: version 2 leaves lazy-refcounts and corrupt out
    [block/qcow2.c]."""
    path = make(tmp_path, "t.qcow2", "qcow2", "64M", "-o", "compat=0.10")
    spec = read_image_facts(str(path)).as_qapi()["format-specific"]
    assert spec == {"type": "qcow2", "data": {"compat": "0.10", "refcount-bits": 16}}


@needs_qemu_img
@pytest.mark.parametrize("backing_fmt", ["raw", "qcow2", None])
def test_qcow2_backing_file_and_format(tmp_path: Path, backing_fmt: str | None) -> None:
    """backing-filename is the name as recorded, full-backing-filename resolved
    against the image's directory (bdrv_get_full_backing_filename), and
    backing-filename-format only when the header records one
    [block/qapi.c bdrv_query_image_info; block/qcow2.c backing format extension]."""
    make(tmp_path, "base.img", backing_fmt or "raw", "32M")
    if backing_fmt is not None:
        path = make(tmp_path, "top.qcow2", "qcow2", "32M", "-b", "base.img", "-F", backing_fmt)
    else:
        # qemu-img 7.2 insists on -F; 2.11 (and the emulator's writer) did not.
        path = tmp_path / "top.qcow2"
        create_image(str(path), "qcow2", 32 * MiB, backing_file="base.img")
    facts = read_image_facts(str(path))
    assert facts.backing_filename == "base.img"
    assert facts.full_backing_filename == str(tmp_path / "base.img")
    assert facts.backing_filename_format == backing_fmt
    assert_same_as_qemu_img(path)


@needs_qemu_img
def test_relative_image_path_resolves_backing_relative_to_it(in_tmp: Path) -> None:
    """path_combine keeps everything of the image's own name up to its last '/', so a
    relative image name gives a relative full backing name [block.c path_combine]."""
    (in_tmp / "sub").mkdir()
    make(in_tmp, "sub/base.img", "raw", "1M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.img", "-F", "raw", "sub/top.qcow2")
    facts = read_image_facts("sub/top.qcow2")
    assert facts.full_backing_filename == "sub/base.img"
    assert facts.as_qapi() == _as_2_11(qemu_info("sub/top.qcow2"))


@needs_qemu_img
def test_qcow2_internal_snapshots(tmp_path: Path) -> None:
    """The snapshot table as qcow2_read_snapshots reads it and
    bdrv_query_snapshot_info_list reports it (vm-clock split into sec/nsec)
    [block/qcow2-snapshot.c; block/qapi.c]."""
    path = make(tmp_path, "t.qcow2", "qcow2", "64M")
    qemu_img("snapshot", "-c", "first", str(path))
    qemu_img("snapshot", "-c", "second", str(path))
    facts = read_image_facts(str(path))
    assert [(s.id, s.name) for s in facts.snapshots] == [("1", "first"), ("2", "second")]
    assert_same_as_qemu_img(path)


@needs_qemu_img
def test_qcow2_persistent_bitmaps(tmp_path: Path) -> None:
    """The bitmaps header extension and directory [block/qcow2.c
    qcow2_read_extensions; block/qcow2-bitmap.c bitmap_list_load]: name, granularity,
    the auto and in-use flags."""
    path = make(tmp_path, "t.qcow2", "qcow2", "64M")
    qemu_img("bitmap", "--add", str(path), "b0")
    qemu_img("bitmap", "--add", "-g", "131072", str(path), "b1")
    facts = read_image_facts(str(path))
    assert [(b.name, b.granularity, b.auto, b.in_use) for b in facts.persistent_bitmaps] == [
        ("b0", 65536, True, False),
        ("b1", 131072, True, False),
    ]
    assert_same_as_qemu_img(path)


@needs_qemu_img
def test_stale_bitmaps_extension_is_dropped_by_a_read_write_open(tmp_path: Path) -> None:
    """Without the autoclear bitmaps bit the extension is stale: 2.11 ignores it and,
    on a read-write open, rewrites the header without it [block/qcow2.c
    qcow2_read_extensions, qcow2_do_open update_header]."""
    path = make(tmp_path, "t.qcow2", "qcow2", "64M")
    qemu_img("bitmap", "--add", str(path), "b0")
    patch_qcow2(path, autoclear_features=0)
    assert read_image_facts(str(path)).persistent_bitmaps == ()
    assert b"\x23\x85\x28\x75" in path.read_bytes()[:65536]
    open_image(str(path)).close()
    assert b"\x23\x85\x28\x75" not in path.read_bytes()[:65536]
    # The bitmap's clusters are leaked now, as 2.11 warns; leaks only (exit 3).
    assert qemu_img("check", str(path), check=False).returncode == 3


@needs_qemu_img
def test_unknown_autoclear_bits_cleared_only_by_read_write_open(tmp_path: Path) -> None:
    """Unknown autoclear bits are cleared when the image is opened read-write and
    active, and left alone read-only [block/qcow2.c qcow2_do_open]."""
    path = make(tmp_path, "t.qcow2", "qcow2", "64M")
    patch_qcow2(path, autoclear_features=0x20)
    read_image_facts(str(path), read_only=True)
    assert qcow2_header(path)["autoclear_features"] == 0x20
    open_image(str(path)).close()
    assert qcow2_header(path)["autoclear_features"] == 0
    qemu_img("check", str(path))


@needs_qemu_img
def test_qcow2_dirty_bit_not_reported(tmp_path: Path) -> None:
    """A set dirty bit does not show: 2.11's qcow2_get_info never fills is_dirty, so
    dirty-flag stays false [block/qcow2.c qcow2_get_info]. (qemu-img 7.2 reports
    true: later versions set is_dirty from the header.)"""
    path = make(tmp_path, "t.qcow2", "qcow2", "64M", "-o", "lazy_refcounts=on")
    patch_qcow2(path, incompatible_features=1)
    facts = read_image_facts(str(path))
    assert facts.dirty_flag is False
    theirs = _as_2_11(qemu_info(path))
    assert theirs.pop("dirty-flag") is True
    mine = facts.as_qapi()
    mine.pop("dirty-flag")
    assert mine == theirs


@needs_qemu_img
def test_qcow2_corrupt_bit(tmp_path: Path) -> None:
    """The corrupt bit shows in format-specific, and refuses read-write opens
    [block/qcow2.c qcow2_get_specific_info, qcow2_do_open]."""
    path = make(tmp_path, "t.qcow2", "qcow2", "64M")
    patch_qcow2(path, incompatible_features=2)
    facts = read_image_facts(str(path))
    assert isinstance(facts.format_specific, Qcow2Specific)
    assert facts.format_specific.corrupt is True
    assert_same_as_qemu_img(path)
    assert error_of(open_image, str(path)) == "qcow2: Image is corrupt; cannot be opened read/write"


@needs_qemu_img
def test_qcow2_luks_encryption(tmp_path: Path) -> None:
    """A LUKS-encrypted qcow2: `encrypted` and the `encrypt` member with the LUKS
    header's fields [block/qcow2.c qcow2_get_specific_info; crypto/block-luks.c
    qcrypto_block_luks_get_info]; without a key secret 2.11 refuses to open it
    [crypto/block-luks.c qcrypto_block_luks_open]."""
    path = tmp_path / "t.qcow2"
    make_luks(path, "qcow2", "64M")
    facts = read_image_facts(str(path), key_secret="sec0")
    assert facts.encrypted
    assert_same_as_qemu_img(path, key_secret="sec0")
    assert (
        error_of(read_image_facts, str(path))
        == "Parameter 'encrypt.key-secret' is required for cipher"
    )


@needs_qemu_img
def test_luks_format(tmp_path: Path) -> None:
    """The luks format driver: virtual size is the file length minus the payload
    offset, format-specific type luks [block/crypto.c]."""
    path = tmp_path / "t.luks"
    make_luks(path, "luks", "64M")
    facts = read_image_facts(str(path), key_secret="sec0")
    assert facts.virtual_size == 64 * MiB
    assert_same_as_qemu_img(path, key_secret="sec0")
    assert error_of(read_image_facts, str(path)) == (
        "Parameter 'key-secret' is required for cipher"
    )


OTHER_FORMATS = [
    pytest.param("raw", (), None, id="raw"),
    pytest.param("qcow", (), "qcow", id="qcow"),
    pytest.param("qed", (), None, id="qed"),
    pytest.param("qed", ("-o", "cluster_size=4096,table_size=16"), None, id="qed-options"),
    pytest.param("vdi", (), None, id="vdi"),
    pytest.param("vdi", ("-o", "static=on"), None, id="vdi-static"),
    pytest.param("vpc", (), None, id="vpc-dynamic"),
    pytest.param("vpc", ("-o", "subformat=fixed"), "vpc", id="vpc-fixed"),
    pytest.param("vpc", ("-o", "force_size=on"), None, id="vpc-force-size"),
    pytest.param("vhdx", (), None, id="vhdx"),
    pytest.param("vhdx", ("-o", "subformat=fixed"), None, id="vhdx-fixed"),
    pytest.param("vmdk", (), None, id="vmdk-monolithicSparse"),
    pytest.param("vmdk", ("-o", "subformat=monolithicFlat"), None, id="vmdk-monolithicFlat"),
    pytest.param(
        "vmdk", ("-o", "subformat=twoGbMaxExtentSparse"), None, id="vmdk-twoGbMaxExtentSparse"
    ),
    pytest.param("vmdk", ("-o", "subformat=streamOptimized"), None, id="vmdk-streamOptimized"),
]


@needs_qemu_img
@pytest.mark.parametrize(("fmt", "opts", "explicit"), OTHER_FORMATS)
def test_other_format_facts_match_qemu_img(
    tmp_path: Path, fmt: str, opts: tuple[str, ...], explicit: str | None
) -> None:
    """Each driver's get_info / get_specific_info as 2.11 reports them
    [block/raw-format.c, qcow.c, qed.c, vdi.c, vpc.c, vhdx.c, vmdk.c]: cluster sizes,
    the vpc CHS-derived size, vmdk's extents list (format "" for a monolithic sparse
    extent, FLAT/SPARSE from descriptor lines), actual sizes summed over extents."""
    size = "3G" if "twoGbMaxExtentSparse" in opts[-1:] else "64M"
    path = make(tmp_path, f"t.{fmt}", fmt, size, *opts)
    assert_same_as_qemu_img(path, explicit)


@needs_qemu_img
def test_qed_backing_and_need_check_bit(tmp_path: Path) -> None:
    """QED records a raw backing format only as the no-probe feature bit, and reports
    the need-check bit as dirty-flag [block/qed.c bdrv_qed_do_open,
    bdrv_qed_get_info: is_dirty = features & QED_F_NEED_CHECK; a read-only open
    does not repair]. (qemu-img 7.2 reports false for the same unchanged file.)"""
    make(tmp_path, "base.raw", "raw", "16M")
    path = make(tmp_path, "t.qed", "qed", "16M", "-b", "base.raw", "-F", "raw")
    assert read_image_facts(str(path)).backing_filename_format == "raw"
    data = bytearray(path.read_bytes())
    features = struct.unpack_from("<Q", data, 16)[0]
    struct.pack_into("<Q", data, 16, features | 0x02)
    path.write_bytes(bytes(data))
    facts = read_image_facts(str(path))
    assert facts.dirty_flag is True
    theirs = _as_2_11(qemu_info(path))
    theirs.pop("dirty-flag")
    mine = facts.as_qapi()
    mine.pop("dirty-flag")
    assert mine == theirs


@needs_qemu_img
def test_vmdk_backing_has_no_format(tmp_path: Path) -> None:
    """vmdk's parent is `parentFileNameHint`; 2.11 records no backing format for it
    [block/vmdk.c vmdk_parent_open]."""
    make(tmp_path, "base.vmdk", "vmdk", "16M")
    path = make(tmp_path, "t.vmdk", "vmdk", "16M", "-b", "base.vmdk", "-F", "vmdk")
    facts = read_image_facts(str(path))
    assert facts.backing_filename == "base.vmdk"
    assert facts.backing_filename_format is None
    assert_same_as_qemu_img(path)


@needs_qemu_img
def test_vmdk_extent_files_are_reported_and_locked(tmp_path: Path) -> None:
    """A descriptor's extents are file nodes of their own, opened relative to the
    descriptor [block/vmdk.c vmdk_parse_extents], and each takes the format's file
    permissions (bdrv_format_default_perms applies to every child_file)."""
    path = make(tmp_path, "t.vmdk", "vmdk", "3G", "-o", "subformat=twoGbMaxExtentSparse")
    with open_image(str(path)) as image:
        assert image.facts.extent_files == (
            str(tmp_path / "t-s001.vmdk"),
            str(tmp_path / "t-s002.vmdk"),
        )
        assert [lock.held_bytes() for lock in image.locks] == [(100, 101, 103, 201, 203)] * 3


# --- probing ------------------------------------------------------------------------


@needs_qemu_img
@pytest.mark.parametrize("fmt", ["qcow2", "qcow", "qed", "vdi", "vpc", "vhdx", "vmdk"])
def test_probing_finds_the_format(tmp_path: Path, fmt: str) -> None:
    """bdrv_probe_all with the first BLOCK_PROBE_BUF_SIZE (512) bytes picks the driver
    whose probe scores highest [block.c find_image_format; include/block/block_int.h]."""
    path = make(tmp_path, f"t.{fmt}", fmt, "16M")
    facts = read_image_facts(str(path))
    assert facts.format == fmt
    assert facts.probed


@needs_qemu_img
def test_probing_small_descriptor_file(tmp_path: Path) -> None:
    """A vmdk descriptor of a few hundred bytes is still probed: the probe buffer is
    one sector, and a non-empty file is at least one sector long [block.c
    find_image_format]."""
    path = make(tmp_path, "t.vmdk", "vmdk", "8M", "-o", "subformat=monolithicFlat")
    assert path.stat().st_size < 512
    assert read_image_facts(str(path)).format == "vmdk"


def test_probing_falls_back_to_raw(tmp_path: Path) -> None:
    """raw_probe scores 1, so anything unrecognised is raw; an empty file is raw
    without reading [block/raw-format.c raw_probe; block.c find_image_format]."""
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello" * 1000)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_image_facts(str(junk)).format == "raw"
    assert read_image_facts(str(empty)).format == "raw"


@needs_qemu_img
def test_fixed_vhd_probes_as_raw(tmp_path: Path) -> None:
    """vpc_probe looks only at offset 0, where a fixed VHD has guest data, so probing
    calls it raw; naming the format finds the footer at the end [block/vpc.c]."""
    path = make(tmp_path, "t.vpc", "vpc", "16M", "-o", "subformat=fixed")
    assert read_image_facts(str(path)).format == "raw"
    assert read_image_facts(str(path), "vpc").format == "vpc"


def test_dmg_name_wins_probing_and_is_refused(tmp_path: Path) -> None:
    """dmg_probe scores 2 for any name ending in .dmg, beating raw [block/dmg.c];
    the emulator does not read dmg and refuses it like a non-whitelisted driver
    [block.c bdrv_open_common]."""
    path = tmp_path / "disk.dmg"
    path.write_bytes(bytes(4096))
    with pytest.raises(EmulatorLimitation) as info:
        read_image_facts(str(path))
    assert info.value.desc == "Driver 'dmg' is not whitelisted"


def test_raw_size_rounds_up_to_sectors(tmp_path: Path) -> None:
    """block.c keeps lengths in sectors (refresh_total_sectors rounds up), so a
    1000-byte raw file is 1024 bytes long to QEMU 2.11."""
    path = tmp_path / "odd.raw"
    path.write_bytes(bytes(1000))
    assert read_image_facts(str(path), "raw").virtual_size == 1024


# --- errors -------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    """file-posix raw_open_common: `Could not open '%s': %s` with strerror(ENOENT)
    [block/file-posix.c]."""
    path = tmp_path / "nope.qcow2"
    assert error_of(read_image_facts, str(path)) == (
        f"Could not open '{path}': No such file or directory"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root is not denied access")
def test_permission_denied(tmp_path: Path) -> None:
    """EACCES from open(2) comes through as strerror [block/file-posix.c]."""
    path = tmp_path / "locked.raw"
    path.write_bytes(bytes(512))
    path.chmod(0)
    assert error_of(read_image_facts, str(path)) == (f"Could not open '{path}': Permission denied")


def test_directory_read_write(tmp_path: Path) -> None:
    """A directory cannot be opened O_RDWR: EISDIR [block/file-posix.c]."""
    assert error_of(open_image, str(tmp_path)) == f"Could not open '{tmp_path}': Is a directory"


def test_directory_read_only(tmp_path: Path) -> None:
    """2.11 has no regular-file check: a directory opens read-only and the first read
    fails -- while probing, or while reading the header [block.c
    find_image_format; block/qcow2.c qcow2_do_open]."""
    assert error_of(read_image_facts, str(tmp_path)) == (
        "Could not read image for determining its format: Is a directory"
    )
    assert error_of(read_image_facts, str(tmp_path), "qcow2") == (
        "Could not read qcow2 header: Is a directory"
    )


def test_unknown_driver(tmp_path: Path) -> None:
    """bdrv_fill_options: `Unknown driver '%s'` [block.c]."""
    path = tmp_path / "x"
    path.write_bytes(bytes(512))
    assert error_of(read_image_facts, str(path), "qcow3") == "Unknown driver 'qcow3'"


def test_force_share_needs_read_only(tmp_path: Path) -> None:
    """bdrv_open_common: force-share only for read-only nodes [block.c]."""
    path = tmp_path / "x"
    path.write_bytes(bytes(512))
    assert error_of(open_image, str(path), force_share=True) == (
        "force-share=on can only be used with read-only images"
    )


WRONG_MAGIC = [
    ("qcow2", "Image is not in qcow2 format"),
    ("qcow", "Image not in qcow format"),
    ("qed", "Image not in QED format"),
    ("vdi", "Image not in VDI format (bad signature 00000000)"),
    ("vpc", "invalid VPC image"),
    ("vmdk", "invalid VMDK image descriptor"),
    ("vhdx", "Could not open '{path}': Invalid argument"),
]


@pytest.mark.parametrize(("fmt", "message"), WRONG_MAGIC)
def test_wrong_magic_for_requested_format(tmp_path: Path, fmt: str, message: str) -> None:
    """Each driver's wording when the file is not in its format [block/qcow2.c,
    qcow.c, qed.c, vdi.c, vpc.c, vmdk.c vmdk_open_desc_file; vhdx.c fails with a bare
    EINVAL that bdrv_open_driver words]."""
    path = tmp_path / "zeros"
    path.write_bytes(bytes(65536))
    assert error_of(read_image_facts, str(path), fmt) == message.format(path=path)


def test_luks_wrong_magic(tmp_path: Path) -> None:
    """qcrypto_block_luks_open: `Volume is not in LUKS format` (after the key-secret
    check) [crypto/block-luks.c]."""
    path = tmp_path / "zeros"
    path.write_bytes(bytes(4096))
    assert error_of(read_image_facts, str(path), "luks", key_secret="s") == (
        "Volume is not in LUKS format"
    )


def _qcow2_image(tmp_path: Path) -> Path:
    path = tmp_path / "t.qcow2"
    create_image(str(path), "qcow2", 64 * MiB)
    return path


QCOW2_HEADER_ERRORS = [
    ({"version": 1}, "Unsupported qcow2 version 1"),
    ({"version": 4}, "Unsupported qcow2 version 4"),
    ({"cluster_bits": 8}, "Unsupported cluster size: 2^8"),
    ({"cluster_bits": 22}, "Unsupported cluster size: 2^22"),
    ({"header_length": 100}, "qcow2 header too short"),
    ({"header_length": 65544}, "qcow2 header exceeds cluster size"),
    ({"backing_file_offset": 65537}, "Invalid backing file offset"),
    (
        {"incompatible_features": 0x20},
        "Unsupported qcow2 feature(s): Unknown incompatible feature: 20",
    ),
    ({"refcount_order": 7}, "Reference count entry width too large; may not exceed 64 bits"),
    (
        {"crypt_method": 1},
        "Use of AES-CBC encrypted qcow2 images is no longer supported in system emulators",
    ),
    ({"refcount_table_clusters": 129}, "Reference count table too large"),
    ({"refcount_table_clusters": 0}, "Image does not contain a reference count table"),
    ({"refcount_table_offset": 65537}, "Invalid reference count table offset"),
    ({"nb_snapshots": 65537}, "Too many snapshots"),
    ({"nb_snapshots": 1, "snapshots_offset": 3}, "Invalid snapshot table offset"),
    ({"l1_size": 0x400001}, "Active L1 table too large"),
    ({"l1_size": 0}, "L1 table is too small"),
    ({"l1_table_offset": 4}, "Invalid L1 table offset"),
    ({"crypt_method": 3}, "Unsupported encryption method 3"),
    ({"crypt_method": 2}, "Missing CRYPTO header for crypt method 2"),
    ({"backing_file_offset": 65000, "backing_file_size": 600}, "Backing file name too long"),
]


@pytest.mark.parametrize(("fields", "message"), QCOW2_HEADER_ERRORS)
def test_qcow2_header_checks(tmp_path: Path, fields: dict[str, int], message: str) -> None:
    """qcow2_do_open's header checks, in its order and wording (block.md §9 lists the
    main ones) [block/qcow2.c qcow2_do_open, report_unsupported_feature]."""
    path = _qcow2_image(tmp_path)
    patch_qcow2(path, **fields)
    # Named explicitly: a version-1 header would probe as qcow.
    assert error_of(read_image_facts, str(path), "qcow2") == message


def test_qcow2_unsupported_feature_named_by_feature_table(tmp_path: Path) -> None:
    """An unknown incompatible bit is named from the image's feature name table when
    it lists the bit [block/qcow2.c report_unsupported_feature]."""
    path = _qcow2_image(tmp_path)
    data = bytearray(path.read_bytes())
    table_at = data.index(b"dirty bit") - 2
    struct.pack_into(">BB46s", data, table_at, 0, 5, b"fancy feature")
    path.write_bytes(bytes(data))
    patch_qcow2(path, incompatible_features=(1 << 5) | (1 << 6))
    assert error_of(read_image_facts, str(path)) == (
        "Unsupported qcow2 feature(s): fancy feature, Unknown incompatible feature: 40"
    )


def test_qcow2_extension_errors(tmp_path: Path) -> None:
    """Header extension framing and the backing-format extension's size limit
    [block/qcow2.c qcow2_read_extensions]."""
    path = _qcow2_image(tmp_path)
    data = bytearray(path.read_bytes())
    struct.pack_into(">II", data, 104, 0xE2792ACA, 16)
    path.write_bytes(bytes(data))
    assert error_of(read_image_facts, str(path)) == (
        "ERROR: ext_backing_format: len=16 too large (>=16)"
    )
    struct.pack_into(">II", data, 104, 0x12345678, 70000)
    path.write_bytes(bytes(data))
    assert error_of(read_image_facts, str(path)) == "Header extension too large"


def test_qcow_header_checks(tmp_path: Path) -> None:
    """qcow_open's checks [block/qcow.c]."""
    path = tmp_path / "t.qcow"
    create_image(str(path), "qcow", 16 * MiB)
    data = bytearray(path.read_bytes())
    struct.pack_into(">I", data, 4, 2)
    path.write_bytes(bytes(data))
    assert error_of(read_image_facts, str(path), "qcow") == "Unsupported qcow version 2"
    struct.pack_into(">I", data, 4, 1)
    data[32] = 17
    path.write_bytes(bytes(data))
    assert error_of(read_image_facts, str(path), "qcow") == (
        "Cluster size must be between 512 and 64k"
    )


def test_vdi_header_checks(tmp_path: Path) -> None:
    """vdi_open's checks, e.g. the version and block size ones [block/vdi.c]."""
    path = tmp_path / "t.vdi"
    create_image(str(path), "vdi", 16 * MiB)
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 68, 0x00020000)
    path.write_bytes(bytes(data))
    assert error_of(read_image_facts, str(path)) == "unsupported VDI image (version 2.0)"
    struct.pack_into("<I", data, 68, 0x00010001)
    struct.pack_into("<I", data, 376, 2 * MiB)
    path.write_bytes(bytes(data))
    assert error_of(read_image_facts, str(path)) == (
        "unsupported VDI image (block size 2097152 is not 1048576)"
    )


def test_vmdk_invalid_extent_line(tmp_path: Path) -> None:
    """vmdk_parse_extents: a VMFS extent takes no offset [block/vmdk.c] (the case of
    iotest 059 "malformed VMFS extent description line")."""
    path = tmp_path / "t.vmdk"
    path.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=58ab4847\nparentCID=ffffffff\n"
        'createType="vmfs"\n\n# Extent description\nRW 12582912 VMFS "dummy.vmdk" 1\n'
    )
    assert error_of(read_image_facts, str(path)) == (
        'Invalid extent line: RW 12582912 VMFS "dummy.vmdk" 1'
    )


def test_vmdk_missing_extent(tmp_path: Path) -> None:
    """An extent is opened like any file, so a missing one fails with the file
    node's message [block/vmdk.c vmdk_parse_extents; block/file-posix.c]."""
    path = tmp_path / "t.vmdk"
    path.write_text(
        "# Disk DescriptorFile\nversion=1\nCID=58ab4847\nparentCID=ffffffff\n"
        'createType="monolithicFlat"\n\nRW 2048 FLAT "gone-flat.vmdk" 0\n'
    )
    assert error_of(read_image_facts, str(path)) == (
        f"Could not open '{tmp_path / 'gone-flat.vmdk'}': No such file or directory"
    )


def test_vhdx_corrupt_headers(tmp_path: Path) -> None:
    """With both headers' checksums broken vhdx_parse_header fails, passing the byte
    count of its last read as the errno [block/vhdx.c]."""
    path = tmp_path / "t.vhdx"
    create_image(str(path), "vhdx", 16 * MiB)
    data = bytearray(path.read_bytes())
    data[65536 + 8] ^= 0xFF
    data[131072 + 8] ^= 0xFF
    path.write_bytes(bytes(data))
    assert error_of(read_image_facts, str(path)) == (
        "No valid VHDX header found: Unknown error -4096"
    )


# --- creating -----------------------------------------------------------------------


def _check(path: Path, fmt: str) -> None:
    result = qemu_img("check", "-f", fmt, str(path), check=False)
    if "does not support checks" not in result.stderr:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No errors were found on the image." in result.stdout


CREATE_CASES = [
    pytest.param("qcow2", 1 * GiB, {}, id="qcow2"),
    pytest.param("qcow2", 1 * GiB, {"compat": "0.10"}, id="qcow2-v2"),
    pytest.param(
        "qcow2", 3 * GiB, {"lazy_refcounts": True, "cluster_size": 4096}, id="qcow2-lazy-4k"
    ),
    pytest.param(
        "qcow2", 100 * GiB, {"cluster_size": 512, "refcount_bits": 64}, id="qcow2-many-refblocks"
    ),
    pytest.param("qcow2", 0, {}, id="qcow2-empty"),
    pytest.param("raw", 12345, {}, id="raw"),
    pytest.param("raw", 1 * MiB, {"preallocation": "full"}, id="raw-full"),
    pytest.param("qcow", 64 * MiB, {}, id="qcow"),
    pytest.param("qed", 64 * MiB, {}, id="qed"),
    pytest.param("qed", 64 * MiB, {"cluster_size": 4096, "table_size": 16}, id="qed-options"),
    pytest.param("vdi", 64 * MiB, {}, id="vdi"),
    pytest.param("vdi", 8 * MiB, {"static": True}, id="vdi-static"),
    pytest.param("vpc", 64 * MiB, {}, id="vpc"),
    pytest.param("vpc", 64 * MiB, {"subformat": "fixed"}, id="vpc-fixed"),
    pytest.param("vpc", 64 * MiB, {"force_size": True}, id="vpc-force-size"),
    pytest.param("vhdx", 64 * MiB, {}, id="vhdx"),
    pytest.param("vhdx", 8 * MiB, {"subformat": "fixed"}, id="vhdx-fixed"),
    pytest.param("vmdk", 64 * MiB, {}, id="vmdk"),
    pytest.param("vmdk", 8 * MiB, {"subformat": "monolithicFlat"}, id="vmdk-flat"),
    pytest.param("vmdk", 3 * GiB, {"subformat": "twoGbMaxExtentSparse"}, id="vmdk-split"),
    pytest.param("vmdk", 64 * MiB, {"subformat": "streamOptimized"}, id="vmdk-stream"),
]


@needs_qemu_img
@pytest.mark.parametrize(("fmt", "size", "options"), CREATE_CASES)
def test_created_images_pass_qemu_img(
    tmp_path: Path, fmt: str, size: int, options: dict[str, Any]
) -> None:
    """Images written by the emulator are accepted by qemu-img check and reported by
    qemu-img info as the emulator reads them; sizes follow each driver's create
    (vpc rounds to a CHS geometry) [block/*.c *_create]."""
    path = tmp_path / f"new.{fmt}"
    create_image(str(path), fmt, size, options=options)
    _check(path, fmt)
    theirs = qemu_info(path, fmt)
    if fmt != "vpc":
        assert theirs["virtual-size"] == (size + 511) // 512 * 512
    assert read_image_facts(str(path), fmt).as_qapi() == _as_2_11(theirs)


@needs_qemu_img
@pytest.mark.parametrize(
    ("fmt", "backing_fmt"),
    [
        ("qcow2", "raw"),
        ("qcow2", "qcow2"),
        ("qcow2", None),
        ("qed", "raw"),
        ("qed", "qcow2"),
        ("qcow", None),
        ("vmdk", None),
    ],
)
def test_created_overlay_has_backing_chain(
    tmp_path: Path, fmt: str, backing_fmt: str | None
) -> None:
    """An overlay records the backing file name exactly as given (relative stays
    relative) and the backing format where the format can [block/qcow2.c
    qcow2_change_backing_file; qed.c qed_create; qcow.c qcow_create; vmdk.c
    vmdk_create]; qemu-img follows the chain."""
    base_fmt = backing_fmt or ("vmdk" if fmt == "vmdk" else "raw")
    base = tmp_path / f"base.{base_fmt}"
    create_image(str(base), base_fmt, 32 * MiB)
    path = tmp_path / f"top.{fmt}"
    create_image(
        str(path), fmt, 32 * MiB, backing_file=f"base.{base_fmt}", backing_format=backing_fmt
    )
    _check(path, fmt)
    facts = read_image_facts(str(path), fmt)
    assert facts.backing_filename == f"base.{base_fmt}"
    assert facts.full_backing_filename == str(base)
    chain = json.loads(
        qemu_img("info", "--backing-chain", "--output=json", "-f", fmt, str(path)).stdout
    )
    assert [c["filename"] for c in chain] == [str(path), str(base)]
    assert chain[0]["backing-filename"] == f"base.{base_fmt}"
    assert chain[0]["virtual-size"] == 32 * MiB
    expected_fmt = backing_fmt if fmt == "qcow2" else ("raw" if backing_fmt == "raw" else None)
    assert facts.backing_filename_format == expected_fmt


def test_qcow2_overlay_layout_is_block_md_section_9(tmp_path: Path) -> None:
    """The byte layout of block.md §9: v3 header of 104 bytes, backing-format and
    feature-table extensions, end marker, backing name right after it (offset 280
    for "raw"), refcount table in cluster 1 pointing at the refcount block in
    cluster 2, L1 table at 3*C with only its entries written (a 1 GiB overlay is
    196608 + 16 bytes) [block/qcow2.c qcow2_create2, qcow2_update_header,
    header_ext_add; block/qcow2-cluster.c qcow2_grow_l1_table]."""
    (tmp_path / "base.raw").write_bytes(b"")
    path = tmp_path / "top.qcow2"
    create_image(str(path), "qcow2", GiB, backing_file="base.raw", backing_format="raw")
    data = path.read_bytes()
    assert len(data) == 196608 + 16
    header = qcow2_header(path)
    assert header == {
        "magic": 0x514649FB,
        "version": 3,
        "backing_file_offset": 280,
        "backing_file_size": 8,
        "cluster_bits": 16,
        "size": GiB,
        "crypt_method": 0,
        "l1_size": 2,
        "l1_table_offset": 196608,
        "refcount_table_offset": 65536,
        "refcount_table_clusters": 1,
        "nb_snapshots": 0,
        "snapshots_offset": 0,
        "incompatible_features": 0,
        "compatible_features": 0,
        "autoclear_features": 0,
        "refcount_order": 4,
        "header_length": 104,
    }
    assert data[104:120] == struct.pack(">II", 0xE2792ACA, 3) + b"raw" + bytes(5)
    assert struct.unpack_from(">II", data, 120) == (0x6803F857, 144)
    assert data[128 : 128 + 48] == struct.pack(">BB46s", 0, 0, b"dirty bit")
    assert data[272:280] == bytes(8)
    assert data[280:288] == b"base.raw"
    assert struct.unpack_from(">Q", data, 65536)[0] == 131072
    assert struct.unpack_from(">4H", data, 131072) == (1, 1, 1, 1)
    assert struct.unpack_from(">H", data, 131072 + 8)[0] == 0
    assert data[196608:] == bytes(16)


def test_qcow2_v2_overlay_layout(tmp_path: Path) -> None:
    """compat=0.10: a 72-byte header, extensions from offset 72, no feature table
    [block/qcow2.c qcow2_update_header]."""
    path = tmp_path / "top.qcow2"
    create_image(
        str(path),
        "qcow2",
        MiB,
        backing_file="b",
        backing_format="qcow2",
        options={"compat": "0.10"},
    )
    data = path.read_bytes()
    assert struct.unpack_from(">II", data, 0) == (0x514649FB, 2)
    assert struct.unpack_from(">II", data, 72) == (0xE2792ACA, 5)
    assert struct.unpack_from(">II", data, 88) == (0, 0)
    assert struct.unpack_from(">QI", data, 8) == (96, 1)
    assert data[96:97] == b"b"


def test_create_relative_backing_stays_relative(in_tmp: Path) -> None:
    """bdrv_img_create passes the backing name on unchanged; the image stores it as
    given [block.c bdrv_img_create; block/qcow2.c qcow2_change_backing_file]."""
    (in_tmp / "d").mkdir()
    create_image("d/base.qcow2", "qcow2", MiB)
    create_image("d/top.qcow2", "qcow2", MiB, backing_file="base.qcow2", backing_format="qcow2")
    facts = read_image_facts("d/top.qcow2")
    assert facts.backing_filename == "base.qcow2"
    assert facts.full_backing_filename == "d/base.qcow2"


def test_create_touches_only_the_target(tmp_path: Path) -> None:
    """Creation writes the target path (creating or truncating it, as file-posix
    raw_create does with O_CREAT|O_TRUNC) and nothing else [block/file-posix.c]."""
    base = tmp_path / "base.raw"
    base.write_bytes(b"keep me" * 100)
    target = tmp_path / "top.qcow2"
    target.write_bytes(b"old contents" * 100000)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p != target}
    create_image(str(target), "qcow2", MiB, backing_file=str(base), backing_format="raw")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p != target}
    assert before == after
    assert read_image_facts(str(target)).backing_filename == str(base)


@needs_qemu_img
def test_vmdk_overlay_records_parent_cid(tmp_path: Path) -> None:
    """vmdk_create reads the parent's CID and writes it as parentCID
    [block/vmdk.c vmdk_create, vmdk_read_cid]."""
    base = make(tmp_path, "base.vmdk", "vmdk", "16M")
    create_image(str(tmp_path / "top.vmdk"), "vmdk", 16 * MiB, backing_file="base.vmdk")
    top = read_image_facts(str(tmp_path / "top.vmdk"))
    parent = read_image_facts(str(base))
    assert isinstance(top.format_specific, VmdkSpecific)
    assert isinstance(parent.format_specific, VmdkSpecific)
    assert top.format_specific.parent_cid == parent.format_specific.cid


CREATE_ERRORS = [
    (dict(fmt="qcow3"), "Unknown file format 'qcow3'"),
    (dict(fmt="dmg"), "Format driver 'dmg' does not support image creation"),
    (dict(fmt="qcow2", options={"nonsense": 1}), "Invalid options for file format 'qcow2'"),
    (dict(fmt="raw", backing_file="b"), "Backing file not supported for file format 'raw'"),
    (
        dict(fmt="qcow", backing_file="b", backing_format="raw"),
        "Backing file format not supported for file format 'qcow'",
    ),
    (
        dict(fmt="vmdk", backing_file="b", backing_format="vmdk"),
        "Backing file format not supported for file format 'vmdk'",
    ),
    (dict(fmt="qcow2", options={"compat": "0.9"}), "Invalid compatibility level: '0.9'"),
    (
        dict(fmt="qcow2", options={"cluster_size": 1000}),
        "Cluster size must be a power of two between 512 and 2048k",
    ),
    (
        dict(fmt="qcow2", options={"compat": "0.10", "lazy_refcounts": True}),
        "Lazy refcounts only supported with compatibility level 1.1 and above "
        "(use compat=1.1 or greater)",
    ),
    (
        dict(fmt="qcow2", options={"refcount_bits": 3}),
        "Refcount width must be a power of two and may not exceed 64 bits",
    ),
    (
        dict(fmt="qcow2", options={"compat": "0.10", "refcount_bits": 8}),
        "Different refcount widths than 16 bits require compatibility level 1.1 or "
        "above (use compat=1.1 or greater)",
    ),
    (
        dict(fmt="qcow2", options={"cluster_size": 512}, size=200 * GiB),
        "The image size is too large for file format 'qcow2'",
    ),
    (dict(fmt="qcow", size=0), "Image size is too small, cannot be zero length"),
    (
        dict(fmt="qed", options={"cluster_size": 1000}),
        "QED cluster size must be within range [4096, 67108864] and power of 2",
    ),
    (dict(fmt="vpc", options={"subformat": "huge"}), "Invalid disk type, huge"),
    (
        dict(fmt="vmdk", options={"subformat": "monolithicFlat"}, backing_file="b"),
        "Flat image can't have backing file",
    ),
    (
        dict(fmt="vhdx", options={"subformat": "differencing"}),
        "Differencing files not yet supported: Operation not supported",
    ),
]


@pytest.mark.parametrize(("kw", "message"), CREATE_ERRORS)
def test_create_errors(tmp_path: Path, kw: dict[str, Any], message: str) -> None:
    """bdrv_img_create's checks and each driver's option checks, with their wording
    [block.c bdrv_img_create; block/qcow2.c qcow2_create and its option helpers;
    qcow.c, qed.c, vpc.c, vmdk.c, vhdx.c *_create]."""
    kw = dict(kw)
    fmt = kw.pop("fmt")
    size = kw.pop("size", MiB)
    assert error_of(create_image, str(tmp_path / "new"), fmt, size, **kw) == message


def test_create_same_name_as_backing(tmp_path: Path) -> None:
    """bdrv_img_create refuses an image that would be its own backing file [block.c]."""
    path = str(tmp_path / "x.qcow2")
    assert error_of(create_image, path, "qcow2", MiB, backing_file=path) == (
        "Error: Trying to create an image with the same filename as the backing file"
    )


def test_create_in_missing_directory(tmp_path: Path) -> None:
    """file-posix raw_create: `Could not create file: %s` [block/file-posix.c]."""
    path = tmp_path / "no" / "such.qcow2"
    assert error_of(create_image, str(path), "qcow2", MiB) == (
        "Could not create file: No such file or directory"
    )


def test_create_luks_needs_key_secret(tmp_path: Path) -> None:
    """LUKS creation without a secret fails in qcrypto_block_luks_create
    [crypto/block-luks.c]; with one, the emulator cannot encrypt and says so."""
    path = str(tmp_path / "x.luks")
    assert error_of(create_image, path, "luks", MiB) == (
        "Parameter 'key-secret' is required for cipher"
    )
    with pytest.raises(EmulatorLimitation):
        create_image(path, "luks", MiB, options={"key-secret": "sec0"})


@needs_qemu_img
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    size=st.integers(min_value=0, max_value=1 << 42),
    cluster_bits=st.integers(min_value=9, max_value=21),
    refcount_order=st.integers(min_value=0, max_value=6),
    lazy=st.booleans(),
)
def test_qcow2_writer_property(
    tmp_path: Path, size: int, cluster_bits: int, refcount_order: int, lazy: bool
) -> None:
    """For any size, cluster size and refcount width 2.11 accepts, the written image
    reads back with that size and cluster size and `qemu-img check` finds no errors;
    sizes whose L1 table would exceed QCOW_MAX_L1_SIZE fail as 2.11 does
    [block/qcow2.c qcow2_create2; block/qcow2-cluster.c qcow2_grow_l1_table]."""
    path = tmp_path / f"p-{size}-{cluster_bits}-{refcount_order}.qcow2"
    options = {
        "cluster_size": 1 << cluster_bits,
        "refcount_bits": 1 << refcount_order,
        "lazy_refcounts": lazy,
    }
    l2_entries = 1 << (cluster_bits - 3)
    l1_size = -(-((size + 511) // 512 * 512) // ((1 << cluster_bits) * l2_entries))
    if l1_size > 0x2000000 // 8:
        assert error_of(create_image, str(path), "qcow2", size, options=options) == (
            "The image size is too large for file format 'qcow2'"
        )
        return
    create_image(str(path), "qcow2", size, options=options)
    facts = read_image_facts(str(path))
    assert facts.virtual_size == (size + 511) // 512 * 512
    assert facts.cluster_size == 1 << cluster_bits
    _check(path, "qcow2")
    path.unlink()


# --- locking ------------------------------------------------------------------------


@needs_qemu_img
def test_running_disk_blocks_qemu_img_info(tmp_path: Path) -> None:
    """A read-write qcow2 node holds write and does not share it, so `qemu-img info`
    (a read-only open that refuses to share write) fails with
    `Failed to get shared "write" lock`, and `qemu-img info -U` (force share)
    succeeds [block/file-posix.c raw_check_lock_bytes; block.c
    bdrv_format_default_perms, bdrv_child_perm]."""
    path = _qcow2_image(tmp_path)
    with open_image(str(path)) as image:
        image.set_parent_perms(*device_perms(read_only=False, resizable=True))
        result = qemu_img("info", str(path), check=False)
        assert result.returncode != 0
        assert 'Failed to get shared "write" lock' in result.stderr
        assert qemu_img("info", "-U", str(path)).returncode == 0
    assert qemu_img("info", str(path)).returncode == 0


def test_two_writers_exclude_each_other(tmp_path: Path) -> None:
    """The second writer finds byte 201 locked (write not shared) and fails with
    `Failed to get "write" lock`; its failed attempt leaves no bytes behind
    [block/file-posix.c raw_handle_perm_lock PREPARE/ABORT]."""
    path = _qcow2_image(tmp_path)
    with open_image(str(path)) as first:
        assert first.locks[0].held_bytes() == (100, 101, 103, 201, 203)
        assert error_of(open_image, str(path)) == 'Failed to get "write" lock'
        assert error_of(open_image, str(path), read_only=True) == (
            'Failed to get shared "write" lock'
        )
        with open_image(str(path), read_only=True, force_share=True) as peek:
            assert peek.locks[0].held_bytes() == (100,)
    with open_image(str(path)) as again:
        assert again.locks[0].held_bytes() == (100, 101, 103, 201, 203)


def test_read_only_opens_share_an_image(tmp_path: Path) -> None:
    """Read-only format nodes (backing files) take consistent read and refuse write
    and resize: any number of them coexist, and a writer is kept out
    [block.c bdrv_format_default_perms]."""
    path = _qcow2_image(tmp_path)
    with open_image(str(path), read_only=True) as a, open_image(str(path), read_only=True):
        assert a.locks[0].held_bytes() == (100, 201, 203)
        assert error_of(open_image, str(path)) == 'Failed to get "write" lock'


@needs_qemu_io
def test_lock_held_by_real_qemu_io(tmp_path: Path) -> None:
    """A real QEMU tool holding the image read-write keeps the emulator out, with
    the same message [block/file-posix.c raw_check_lock_bytes]."""
    path = _qcow2_image(tmp_path)
    assert QEMU_IO is not None
    proc = subprocess.Popen(
        [QEMU_IO, "-f", "qcow2", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("help\n")
        proc.stdin.flush()
        proc.stdout.readline()  # qemu-io answers only once the image is open
        assert error_of(open_image, str(path)) == 'Failed to get "write" lock'
    finally:
        proc.communicate("quit\n", timeout=30)
    open_image(str(path)).close()


@needs_qemu_io
def test_raw_locks_only_with_a_device(tmp_path: Path) -> None:
    """raw passes its parents' permissions through (bdrv_filter_default_perms), so a
    raw image locks nothing until a device attaches; a writable virtio-blk disk then
    holds 100, 101 and 201 and a qemu-io writer is refused [block/raw-format.c;
    hw/block/block.c blkconf_apply_backend_options]."""
    path = tmp_path / "disk.raw"
    create_image(str(path), "raw", MiB)
    with open_image(str(path), "raw") as image:
        assert image.locks[0].held_bytes() == ()
        image.set_parent_perms(*device_perms(read_only=False, resizable=True))
        assert image.locks[0].held_bytes() == (100, 101, 201)
        assert QEMU_IO is not None
        result = subprocess.run(
            [QEMU_IO, "-f", "raw", "-c", "write 0 512", str(path)],
            capture_output=True,
            text=True,
        )
        assert 'Failed to get "write" lock' in result.stderr


NAMES = [
    (Perm.CONSISTENT_READ, "consistent read"),
    (Perm.WRITE, "write"),
    (Perm.WRITE_UNCHANGED, "write unchanged"),
    (Perm.RESIZE, "resize"),
    (Perm.GRAPH_MOD, "change children"),
]


@pytest.mark.parametrize(("bit", "name"), NAMES)
def test_lock_messages_name_each_permission(tmp_path: Path, bit: Perm, name: str) -> None:
    """raw_check_lock_bytes names the permission with bdrv_perm_names: taking a
    permission someone refuses to share, and refusing to share one someone holds
    [block/file-posix.c; block.c bdrv_perm_names]."""
    path = tmp_path / "f"
    path.write_bytes(bytes(512))
    holder = FileLock.open(str(path), writable=True)
    other = FileLock.open(str(path), writable=True)
    try:
        holder.set_perms(Perm.NONE, Perm.ALL & ~bit)
        assert error_of(other.set_perms, bit, Perm.ALL) == f'Failed to get "{name}" lock'
        holder.set_perms(bit, Perm.ALL)
        assert error_of(other.set_perms, Perm.NONE, Perm.ALL & ~bit) == (
            f'Failed to get shared "{name}" lock'
        )
        assert other.held_bytes() == ()
    finally:
        holder.close()
        other.close()


def test_failed_prepare_restores_previous_bytes(tmp_path: Path) -> None:
    """RAW_PL_PREPARE locks the union of old and new bytes, and on a conflict
    RAW_PL_ABORT goes back to exactly the old ones [block/file-posix.c]."""
    path = tmp_path / "f"
    path.write_bytes(bytes(512))
    a = FileLock.open(str(path), writable=True)
    b = FileLock.open(str(path), writable=True)
    try:
        a.set_perms(Perm.CONSISTENT_READ, Perm.ALL & ~Perm.WRITE)
        b.set_perms(Perm.CONSISTENT_READ, Perm.ALL)
        with pytest.raises(ImageError):
            b.set_perms(Perm.CONSISTENT_READ | Perm.WRITE, Perm.ALL)
        assert (b.perm, b.shared) == (Perm.CONSISTENT_READ, Perm.ALL)
        c = FileLock.open(str(path), writable=True)
        try:
            # b's abandoned byte 101 is gone: refusing to share write is possible
            # as far as b is concerned, only a's 201 is still there.
            c.set_perms(Perm.NONE, Perm.ALL & ~Perm.WRITE)
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_inactive_image_takes_no_locks(tmp_path: Path) -> None:
    """An inactive node (incoming migration) does no locking; activation applies the
    permissions [block/file-posix.c raw_handle_perm_lock; block.c
    bdrv_invalidate_cache]. Inactivating (the migration source after completion)
    first recomputes the format node's file permissions -- an inactive format node
    is not writable and shares write and resize -- while the file node is still
    active, so only byte 100 stays locked and the destination can take the image
    [block.c bdrv_inactivate_recurse, bdrv_format_default_perms]."""
    path = _qcow2_image(tmp_path)
    with open_image(str(path), inactive=True) as image:
        assert image.locks[0].held_bytes() == ()
        open_image(str(path)).close()
        image.set_inactive(False)
        assert image.locks[0].held_bytes() == (100, 101, 103, 201, 203)
        image.set_inactive(True)
        assert image.locks[0].held_bytes() == (100,)
        open_image(str(path)).close()


def test_locking_off(tmp_path: Path) -> None:
    """`locking=off` opens no lock descriptor at all [block/file-posix.c]."""
    path = _qcow2_image(tmp_path)
    with open_image(str(path), locking="off") as a, open_image(str(path), locking="off") as b:
        assert a.locks[0].held_bytes() == b.locks[0].held_bytes() == ()


def test_closing_releases_locks(tmp_path: Path) -> None:
    """Closing the lock descriptor drops its OFD locks [block/file-posix.c raw_close]."""
    path = _qcow2_image(tmp_path)
    image: OpenImage = open_image(str(path))
    image.close()
    open_image(str(path)).close()


def test_permission_rules() -> None:
    """The rules the graph model composes, checked against 2.11's sources:
    a virtio-blk disk takes CR+W and shares CR+WU+GM+RESIZE, a CD-ROM shares no
    resize [hw/block/block.c blkconf_apply_backend_options]; a format node adds
    write+resize when writable and never shares them; a backing child is read with
    CR only and shares write only if the parent does [block.c
    bdrv_format_default_perms]; blk_new_open shares everything
    [block/block-backend.c]."""
    cr, w, wu, rs, gm = (
        Perm.CONSISTENT_READ,
        Perm.WRITE,
        Perm.WRITE_UNCHANGED,
        Perm.RESIZE,
        Perm.GRAPH_MOD,
    )
    assert device_perms(read_only=False, resizable=True) == (cr | w, cr | wu | gm | rs)
    assert device_perms(read_only=True, resizable=False) == (cr, cr | wu | gm)
    assert device_perms(read_only=False, resizable=True, share_rw=True)[1] & w
    assert format_file_child_perms(cr | w, cr | wu | gm | rs, writable=True) == (
        cr | w | rs,
        cr | wu | gm,
    )
    assert format_file_child_perms(Perm.NONE, Perm.ALL, writable=False) == (cr, cr | wu | gm)
    assert format_backing_child_perms(cr | w, cr | wu | gm) == (cr, cr | gm | wu)
    assert format_backing_child_perms(cr, Perm.ALL) == (cr, Perm.ALL)
    assert blk_new_open_perms(read_write=True, resize=True) == (cr | w | rs, Perm.ALL)
    assert perm_names(cr | rs | gm) == "consistent read, resize, change children"


@pytest.mark.parametrize("fmt", ["vpc", "vdi", "vhdx", "vmdk"])
def test_creation_is_stamped_by_the_caller(tmp_path: Path, fmt: str) -> None:
    """Image creation reads neither the clock nor the system's random source: the
    caller's `now` and `rng` decide every byte (issue 7, models stay pure). The same
    stamp gives the same file; another seed gives other identifiers (the vpc, vdi
    and vhdx UUIDs, the vhdx sequence number, the vmdk CID) [block/vpc.c vpc_create,
    block/vdi.c vdi_create, block/vhdx.c vhdx_create, block/vmdk.c vmdk_create]."""
    import random

    from blockdev.image import file as image_file

    def make(name: str, seed: int) -> bytes:
        (tmp_path / name).mkdir()
        path = tmp_path / name / f"disk.{fmt}"
        image_file.create_image(str(path), fmt, 16 * MiB, now=1513123200.0,
                                rng=random.Random(seed))
        return path.read_bytes()

    first = make("a", 1)
    assert make("b", 1) == first
    assert make("c", 2) != first


def test_vpc_footer_records_the_creation_time(tmp_path: Path) -> None:
    """vpc_create: the footer's timestamp is the creation time in seconds since
    2000-01-01 (VHD_TIMESTAMP_BASE), here the caller's `now` [block/vpc.c]."""
    import random

    from blockdev.image import file as image_file

    path = tmp_path / "d.vpc"
    image_file.create_image(str(path), "vpc", 16 * MiB, now=946684800.0 + 12345.75,
                            rng=random.Random(0))
    footer = path.read_bytes()[:512]
    assert footer[:8] == b"conectix"
    assert struct.unpack(">I", footer[24:28])[0] == 12345
