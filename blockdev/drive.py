"""The block layer's command-line entry points: `-drive` and `-blockdev`.

Part of the pure `blockdev` layer, called by the command-line composition in `vmm`
with the plain values its parser produces:

* `add_drive(layer, opts)`: one `-drive`, its options as (key, value) strings, with
  QEMU 2.11's semantics [blockdev.c drive_new, blockdev_init]: option renames and
  aliases, `cache=`, `if=`/`media=`/`bus`/`unit`/`index` and the legacy ids
  (`ide0-hd0`, `floppy0`, `virtio0`), `readonly`, `snapshot`, `werror`/`rerror`,
  `format`, `file.*`/`node-name`/driver options, throttling and statistics options.
  It returns the DriveInfo (blockdev.c's, kept with the BlockBackend as
  `legacy_dinfo`); `if=virtio` also yields the `-device virtio-blk-pci` options
  QEMU adds (`DriveResult.implied_device`), which the caller must create in order
  with the other `-device`s. Boards create the devices of `if=ide`, `if=scsi`,
  `if=floppy` (`devices.board`).
* `add_blockdev(layer, options, keyval=...)`: one `-blockdev` (same as
  blockdev-add), its options JSON-typed or keyval strings.
* `drive_del(layer, id)`: HMP drive_del.

The devices themselves (their `drive=` property, realize, unplug) are qdev's:
`devices.qdev`, which reaches the block layer through `blockdev.device_ops`.

Errors raise `GenericError` with QEMU's message; the command line prefixes it with
the option's location and exits, as QEMU does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from blockdev import commands
from blockdev.driveinfo import DriveInfo
from blockdev.drivers.registry import DRIVERS
from blockdev.graph import Backend, OpenFlags
from blockdev.layer import BlockLayer
from blockdev.options import (
    Flat,
    OptDesc,
    absorb,
    extract_subqdict,
)
from blockdev.throttle import ThrottleConfig, drive_option_descs
from schema.errors import GenericError
from schema.model import ObjectType, Schema

IF_NAMES = ("none", "ide", "scsi", "floppy", "pflash", "mtd", "sd", "virtio", "xen")
IF_MAX_DEVS = {"ide": 2, "scsi": 7}

# drive_new's opt_renames, in order.
RENAMES = (
    ("iops", "throttling.iops-total"), ("iops_rd", "throttling.iops-read"),
    ("iops_wr", "throttling.iops-write"), ("bps", "throttling.bps-total"),
    ("bps_rd", "throttling.bps-read"), ("bps_wr", "throttling.bps-write"),
    ("iops_max", "throttling.iops-total-max"), ("iops_rd_max", "throttling.iops-read-max"),
    ("iops_wr_max", "throttling.iops-write-max"), ("bps_max", "throttling.bps-total-max"),
    ("bps_rd_max", "throttling.bps-read-max"), ("bps_wr_max", "throttling.bps-write-max"),
    ("iops_size", "throttling.iops-size"), ("group", "throttling.group"),
    ("readonly", "read-only"),
)

LEGACY_OPTS = (
    OptDesc("bus", "number"), OptDesc("unit", "number"), OptDesc("index", "number"),
    OptDesc("media"), OptDesc("if"), OptDesc("cyls", "number"), OptDesc("heads", "number"),
    OptDesc("secs", "number"), OptDesc("trans"), OptDesc("boot", "bool"), OptDesc("addr"),
    OptDesc("serial"), OptDesc("file"), OptDesc("read-only", "bool"), OptDesc("rerror"),
    OptDesc("werror"), OptDesc("copy-on-read", "bool"),
)

COMMON_OPTS = tuple(
    [OptDesc("snapshot", "bool"), OptDesc("aio"), OptDesc("cache.writeback", "bool"),
     OptDesc("format"), OptDesc("rerror"), OptDesc("werror"), OptDesc("read-only", "bool")]
    + [OptDesc(name, typ) for name, typ in drive_option_descs()]
    + [OptDesc("throttling.group"), OptDesc("copy-on-read", "bool"),
       OptDesc("detect-zeroes"), OptDesc("stats-account-invalid", "bool"),
       OptDesc("stats-account-failed", "bool")])

CACHE_MODES = {  # bdrv_parse_cache_mode: (writethrough, nocache, no_flush)
    "off": (False, True, False), "none": (False, True, False),
    "directsync": (True, True, False), "writeback": (False, False, False),
    "unsafe": (False, False, True), "writethrough": (True, False, False),
}


@attrs.frozen
class DriveResult:
    """What one -drive made: its DriveInfo, its BlockBackend, and for if=virtio the
    `-device` options QEMU appends to the device list."""

    dinfo: DriveInfo
    blk: Backend
    implied_device: tuple[tuple[str, str], ...] | None = None
    warnings: tuple[str, ...] = ()


def _as_pairs(opts: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(opts, Mapping):
        return list(opts.items())
    return list(opts)


def _parse_error_action(value: str, is_read: bool) -> str:
    """parse_block_error_action."""
    if value == "ignore":
        return "ignore"
    if not is_read and value == "enospc":
        return "enospc"
    if value in ("stop", "report"):
        return value
    raise GenericError(f"'{value}' invalid {'read' if is_read else 'write'} error action")


def drive_get(layer: BlockLayer, iface: str, bus: int, unit: int) -> DriveInfo | None:
    for blk in layer.monitor_backends:
        d = blk.legacy_dinfo
        if d is not None and d.type == iface and d.bus == bus and d.unit == unit:
            return d
    return None


def if_max_devs(iface: str, default_if: str = "ide", units_per_default_bus: int = 0) -> int:
    """blockdev.c if_max_devs after vl.c's override_max_devs: a board whose default
    bus takes fewer units (q35's AHCI: one per port) overrides that interface's."""
    if units_per_default_bus and iface == default_if:
        return units_per_default_bus
    return IF_MAX_DEVS.get(iface, 0)


def add_drive(layer: BlockLayer, opts: Mapping[str, str] | Iterable[tuple[str, str]], *,
              default_if: str = "ide", is_default: bool = False,
              units_per_default_bus: int = 0) -> DriveResult:
    """drive_new: one -drive (QemuOpts as string pairs; a key given twice: last wins)."""
    pairs = _as_pairs(opts)
    values: dict[str, str] = {}
    for key, value in pairs:
        values[key] = value
    warnings: list[str] = []
    for old, new in RENAMES:
        if old in values:
            if new in values:
                raise GenericError(f"'{new}' and its alias '{old}' can't be used at the "
                                   "same time")
            values[new] = values.pop(old)
    cache = values.pop("cache", None)
    if cache is not None:
        if cache not in CACHE_MODES:
            raise GenericError("invalid cache option")
        writethrough, nocache, no_flush = CACHE_MODES[cache]
        values.setdefault("cache.writeback", "off" if writethrough else "on")
        values.setdefault("cache.direct", "on" if nocache else "off")
        values.setdefault("cache.no-flush", "on" if no_flush else "off")
    bs_opts: Flat = dict(values)
    legacy = absorb(LEGACY_OPTS, bs_opts)

    for name in ("serial", "trans", "secs", "heads", "cyls", "addr"):
        if legacy.has(name):
            warnings.append(f"'{name}' is deprecated, please use the corresponding option "
                            "of '-device' instead")
    media = "disk"
    read_only = False
    value = legacy.get("media")
    if value is not None:
        if value == "disk":
            media = "disk"
        elif value == "cdrom":
            media = "cdrom"
            read_only = True
        else:
            raise GenericError(f"'{value}' invalid media")
    read_only |= bool(legacy.get("read-only", False))
    copy_on_read = bool(legacy.get("copy-on-read", False))
    if read_only and copy_on_read:
        warnings.append("disabling copy-on-read on read-only drive")
        copy_on_read = False
    bs_opts["read-only"] = "on" if read_only else "off"
    bs_opts["copy-on-read"] = "on" if copy_on_read else "off"

    iface = legacy.get("if")
    if iface is not None:
        if iface not in IF_NAMES:
            raise GenericError(f"unsupported bus type '{iface}'")
    else:
        iface = default_if
    cyls, heads, secs = (legacy.get("cyls", 0), legacy.get("heads", 0), legacy.get("secs", 0))
    if cyls or heads or secs:
        if cyls < 1:
            raise GenericError("invalid physical cyls number")
        if heads < 1:
            raise GenericError("invalid physical heads number")
        if secs < 1:
            raise GenericError("invalid physical secs number")
    trans = legacy.get("trans")
    translation = "auto"
    if trans is not None:
        if not cyls:
            raise GenericError(f"'{trans}' trans must be used with cyls, heads and secs")
        if trans not in ("none", "lba", "large", "rechs", "auto"):
            raise GenericError(f"'{trans}' invalid translation type")
        translation = trans
    if media == "cdrom" and (cyls or secs or heads):
        raise GenericError("CHS can't be set with media=cdrom")

    bus = legacy.get("bus", 0)
    unit = legacy.get("unit", -1)
    index = legacy.get("index", -1)
    bus = bus if bus < 2**63 else bus - 2**64
    unit = unit if unit < 2**63 else unit - 2**64
    index = index if index < 2**63 else index - 2**64
    max_devs = if_max_devs(iface, default_if, units_per_default_bus)
    if index != -1:
        if bus != 0 or unit != -1:
            raise GenericError("index cannot be used with bus and unit")
        bus = index // max_devs if max_devs else 0
        unit = index % max_devs if max_devs else index
    if unit == -1:
        unit = 0
        # drive_get for every unit tried: the drives of this interface, once
        taken = {(d.bus, d.unit) for blk in layer.monitor_backends
                 if (d := blk.legacy_dinfo) is not None and d.type == iface}
        while (bus, unit) in taken:
            unit += 1
            if max_devs and unit >= max_devs:
                unit -= max_devs
                bus += 1
    if max_devs and unit >= max_devs:
        raise GenericError(f"unit {unit} too big (max is {max_devs - 1})")
    if drive_get(layer, iface, bus, unit) is not None:
        raise GenericError(f"drive with bus={bus}, unit={unit} (index={index}) exists")

    if "id" not in bs_opts:
        mediastr = ""
        if iface in ("ide", "scsi"):
            mediastr = "-cd" if media == "cdrom" else "-hd"
        if max_devs:
            bs_opts["id"] = f"{iface}{bus}{mediastr}{unit}"
        else:
            bs_opts["id"] = f"{iface}{mediastr}{unit}"

    devaddr = legacy.get("addr")
    if devaddr is not None and iface != "virtio":
        raise GenericError("addr is not supported by this bus type")
    implied: tuple[tuple[str, str], ...] | None = None
    if iface == "virtio":
        dev = [("driver", "virtio-blk-pci"), ("drive", str(bs_opts["id"]))]
        if devaddr is not None:
            dev.append(("addr", devaddr))
        implied = tuple(dev)

    filename = legacy.get("file")
    for name, ok in (("werror", ("ide", "scsi", "virtio", "none")),
                     ("rerror", ("ide", "virtio", "scsi", "none"))):
        val = legacy.get(name)
        if val is not None:
            if iface not in ok:
                raise GenericError(f"{name} is not supported by this bus type")
            bs_opts[name] = val

    blk = blockdev_init(layer, filename, bs_opts)
    dinfo = DriveInfo(type=iface, bus=bus, unit=unit, serial=legacy.get("serial"),
                      devaddr=devaddr, cyls=cyls, heads=heads, secs=secs, trans=translation,
                      is_default=is_default)
    if iface in ("ide", "scsi", "xen", "none"):
        dinfo.media_cd = media == "cdrom"
    blk.legacy_dinfo = dinfo
    return DriveResult(dinfo=dinfo, blk=blk, implied_device=implied,
                       warnings=tuple(warnings))


def blockdev_init(layer: BlockLayer, file: str | None, bs_opts: Flat) -> Backend:
    """blockdev_init: the part of -drive that makes the BlockBackend."""
    ident = bs_opts.pop("id", None)
    opts = absorb(COMMON_OPTS, bs_opts)
    snapshot = bool(opts.get("snapshot", False))
    account_invalid = bool(opts.get("stats-account-invalid", True))
    account_failed = bool(opts.get("stats-account-failed", True))
    writethrough = not opts.get("cache.writeback", True)
    intervals_dict = extract_subqdict(bs_opts, "stats-intervals.")
    intervals: list[int] = []
    i = 0
    while str(i) in intervals_dict:
        raw = intervals_dict.pop(str(i))
        i += 1
        if isinstance(raw, str):
            ok = raw.isdigit() and 0 < int(raw) <= 0xFFFFFFFF
            if not ok:
                raise GenericError(f"Invalid interval length: {raw}")
            intervals.append(int(raw))
        elif isinstance(raw, int) and not isinstance(raw, bool):
            if not 0 < raw <= 0xFFFFFFFF:
                raise GenericError(f"Invalid interval length: {raw}")
            intervals.append(raw)
        else:
            raise GenericError("The specification of stats-intervals is invalid")
    if intervals_dict:
        raise GenericError(f"Invalid option stats-intervals.{next(iter(intervals_dict))}")

    flags = OpenFlags()
    if opts.get("copy-on-read", False):
        flags.copy_on_read = True
    aio = opts.get("aio")
    if aio is not None and aio not in ("native", "threads"):
        raise GenericError("invalid aio option")
    flags.native_aio = aio == "native"
    group = opts.get("throttling.group")
    cfg = ThrottleConfig.from_options({k: v for k, v in opts.values.items()
                                       if k.startswith("throttling.") and k !=
                                       "throttling.group"})
    cfg.validate()
    detect_zeroes = opts.get("detect-zeroes", "off")
    if detect_zeroes not in ("off", "on", "unmap"):
        raise GenericError(f"Invalid parameter '{detect_zeroes}'")
    fmt = opts.get("format")
    if fmt is not None:
        if fmt == "help" or fmt == "?":
            raise GenericError("Supported formats: " + " ".join(sorted(_formats())))
        if "driver" in bs_opts:
            raise GenericError("Cannot specify both 'driver' and 'format'")
        bs_opts["driver"] = fmt
    on_write_error = "enospc"
    if opts.get("werror") is not None:
        on_write_error = _parse_error_action(opts.get("werror"), False)
    on_read_error = "report"
    if opts.get("rerror") is not None:
        on_read_error = _parse_error_action(opts.get("rerror"), True)
    if snapshot:
        flags.snapshot = True
    read_only = bool(opts.get("read-only", False))

    if (not file) and not bs_opts:
        blk = layer.blk_new(0, 0x1F)
        blk.root_state.open_flags = flags
        blk.root_state.read_only = read_only
        blk.root_state.detect_zeroes = detect_zeroes
    else:
        bs_opts.setdefault("cache.direct", "off")
        bs_opts.setdefault("cache.no-flush", "off")
        bs_opts.setdefault("read-only", "on" if read_only else "off")
        if layer.host.runstate.state == "inmigrate":
            flags.inactive = True
        blk = layer.blk_new_open(file or None, bs_opts, flags)
        bs = blk.bs
        assert bs is not None
        bs.detect_zeroes = detect_zeroes
        blk.stats.account_invalid = account_invalid
        blk.stats.account_failed = account_failed
        for length in intervals:
            blk.stats.intervals.insert(0, length)
    if cfg.enabled():
        tg = layer.throttle_groups.io_limits_enable(
            blk, group if group is not None else str(ident))
        tg.config = cfg
    blk.enable_write_cache = not writethrough
    blk.on_read_error, blk.on_write_error = on_read_error, on_write_error
    try:
        layer.monitor_add_blk(blk, str(ident))
    except GenericError:
        layer.blk_unref(blk)
        raise
    return blk


def _formats() -> list[str]:
    return list(DRIVERS)


# --- -blockdev --------------------------------------------------------------------------


def add_blockdev(layer: BlockLayer, options: Mapping[str, Any], *, keyval: bool = False,
                 schema: Schema | None = None) -> None:
    """One -blockdev: the BlockdevOptions visitor (in its keyval mode, converting the
    strings by type, when `keyval`), then what blockdev-add does [vl.c -blockdev,
    qobject_input_visitor_new_str, qmp_blockdev_add]."""
    if schema is not None:
        from schema.visitor import InputVisitor

        typ = schema.lookup_type("BlockdevOptions")
        assert isinstance(typ, ObjectType)
        options = InputVisitor(keyval=keyval).visit_object_members(typ, dict(options), "")
    elif keyval:
        raise ValueError("keyval -blockdev options need the schema")
    commands.blockdev_add(layer, dict(options))




def drive_del(layer: BlockLayer, ident: str) -> None:
    """HMP drive_del [blockdev.c hmp_drive_del]: a node name goes through blockdev-del;
    a -drive loses its medium and its name (its device keeps an anonymous,
    report-only BlockBackend)."""
    if layer.find_node(ident) is not None:
        commands.BlockCommands(layer).blockdev_del(ident)
        return
    blk = layer.blk_by_name(ident)
    if blk is None:
        raise GenericError(f"Device '{ident}' not found")
    if blk.legacy_dinfo is None:
        raise GenericError("Deleting device added with blockdev-add is not supported")
    bs = blk.bs
    if bs is not None:
        bs.check_op("drive-del")
        layer.blk_remove_bs(blk)
    layer.monitor_remove_blk(blk)
    if blk.dev is not None:
        blk.on_read_error = blk.on_write_error = "report"
    else:
        layer.blk_unref(blk)
