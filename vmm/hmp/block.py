"""HMP commands of the block layer, and their texts (hmp.c, blockdev.c, block/qapi.c).

`vmm` layer. The texts are computed from what the QMP queries return (`info block`
prints query-block and query-named-block-nodes as hmp.c print_block_info does,
`-v` each image as block/qapi.c bdrv_image_info_dump); commands call the QMP
handlers as hmp.c calls qmp_*, and the few that hmp.c implements on the block layer
itself (`drive_add`, `drive_del`, `commit`) use `blockdev` directly through the
machine's `HmpState.block`. The VM snapshots (`savevm`, `info snapshots`) are
`vmm.hmp.savevm`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from blockdev.commands import bds_tree_init
from blockdev.drive import IF_NAMES, add_drive, drive_del
from blockdev.graph import PERM_ALL
from blockdev.layer import BlockLayer
from schema.errors import GenericError
from schema.opts.qemuopts import OptsError, OptsStore
from schema.output import check_return
from schema.qobject import format_qnum_double, qdict_order
from vmm.cmdline.groups import GROUPS
from vmm.hmp.commands import Args, qapi_enum_parse
from vmm.hmp.interpreter import Hmp

_NB_SUFFIXES = "KMGT"


def block_layer(hmp: Hmp) -> BlockLayer:
    layer = hmp.state.block
    assert layer is not None, "a machine's human monitors reach its block layer"
    return layer


# -- texts of block/qapi.c ----------------------------------------------------------------


def human_readable_size(size: int) -> str:
    """block/qapi.c get_human_readable_size."""
    if size <= 999:
        return str(size)
    base = 1024
    for i, suffix in enumerate(_NB_SUFFIXES):
        if size < 10 * base:
            return f"{size / base:0.1f}{suffix}"
        if size < 1000 * base or i == len(_NB_SUFFIXES) - 1:
            return f"{(size + (base >> 1)) // base}{suffix}"
        base *= 1024
    raise AssertionError("unreachable")


def _pad(text: str, width: int) -> str:
    """printf's `%-Ns` (negative width) or `%Ns`: widths count bytes."""
    fill = " " * max(0, abs(width) - len(text.encode("utf-8", "surrogateescape")))
    return text + fill if width < 0 else fill + text


def snapshot_line(sn: dict[str, Any] | None) -> str:
    """block/qapi.c bdrv_snapshot_dump: the header (None) or one SnapshotInfo, without
    a line end. Dates are local time, as QEMU's localtime_r gives them."""
    if sn is None:
        return f"{'ID':<10}{'TAG':<20}{'VM SIZE':>7}{'DATE':>20}{'VM CLOCK':>15}"
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sn["date-sec"]))
    nsec = sn["vm-clock-sec"] * 1_000_000_000 + sn["vm-clock-nsec"]
    secs = nsec // 1_000_000_000
    clock = (f"{secs // 3600:02d}:{(secs // 60) % 60:02d}:{secs % 60:02d}."
             f"{(nsec // 1_000_000) % 1000:03d}")
    return (_pad(sn["id"], -10) + _pad(sn["name"], -20)
            + _pad(human_readable_size(sn["vm-state-size"]), 7) + _pad(date, 20)
            + _pad(clock, 15))


def dump_qobject(value: Any, indent: int) -> str:
    """block/qapi.c dump_qobject (dump_qdict: QDict order, dashes of keys as spaces;
    dump_qlist: `[i]`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_qnum_double(value)  # qnum_to_string
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        entries = [(key.replace("-", " "), value[key]) for key in qdict_order(value)]
    else:
        entries = [(f"[{i}]", item) for i, item in enumerate(value)]
    out = []
    for label, item in entries:
        composite = isinstance(item, (dict, list))
        out.append(f"{'':{indent * 4}}{label}:{chr(10) if composite else ' '}")
        out.append(dump_qobject(item, indent + 1))
        if not composite:
            out.append("\n")
    return "".join(out)


def image_info_dump(info: dict[str, Any]) -> str:
    """block/qapi.c bdrv_image_info_dump of one ImageInfo (members in schema order)."""
    disk = (human_readable_size(info["actual-size"]) if "actual-size" in info
            else "unavailable")
    out = [f"image: {info['filename']}\n"
           f"file format: {info['format']}\n"
           f"virtual size: {human_readable_size(info['virtual-size'])} "
           f"({info['virtual-size']} bytes)\n"
           f"disk size: {disk}\n"]
    if info.get("encrypted"):
        out.append("encrypted: yes\n")
    if "cluster-size" in info:
        out.append(f"cluster_size: {info['cluster-size']}\n")
    if info.get("dirty-flag"):
        out.append("cleanly shut down: no\n")
    if "backing-filename" in info:
        line = f"backing file: {info['backing-filename']}"
        full = info.get("full-backing-filename")
        if full is None:
            line += " (cannot determine actual path)"
        elif full != info["backing-filename"]:
            line += f" (actual path: {full})"
        out.append(line + "\n")
        if "backing-filename-format" in info:
            out.append(f"backing file format: {info['backing-filename-format']}\n")
    if "snapshots" in info:
        out.append("Snapshot list:\n" + snapshot_line(None) + "\n")
        for sn in info["snapshots"]:
            out.append(snapshot_line(sn) + "\n")
    if "format-specific" in info:
        out.append("Format specific information:\n")
        out.append(dump_qobject(info["format-specific"]["data"], 1))
    return "".join(out)


# -- info block, info blockstats, info block-jobs -----------------------------------------


def _print_block_info(hmp: Hmp, info: dict[str, Any] | None,
                      inserted: dict[str, Any] | None, verbose: bool) -> None:
    """hmp.c print_block_info."""
    if info is not None and info["device"]:
        head = info["device"]
        if inserted is not None and "node-name" in inserted:
            head += f" ({inserted['node-name']})"
    elif inserted is not None and "node-name" in inserted:
        head = inserted["node-name"]
    elif info is not None and "qdev" in info:
        head = info["qdev"]
    else:
        head = "<anonymous>"
    if inserted is not None:
        flags = (", read-only" if inserted["ro"] else "") + (
            ", encrypted" if inserted["encrypted"] else "")
        hmp.printf(f"{head}: {inserted['file']} ({inserted['drv']}{flags})\n")
    else:
        hmp.printf(f"{head}: [not inserted]\n")
    if info is not None:
        if "qdev" in info:
            hmp.printf(f"    Attached to:      {info['qdev']}\n")
        if info.get("io-status", "ok") != "ok":
            hmp.printf(f"    I/O status:       {info['io-status']}\n")
        if info["removable"]:
            hmp.printf(f"    Removable device: {'' if info['locked'] else 'not '}locked, "
                       f"tray {'open' if info.get('tray_open') else 'closed'}\n")
    if inserted is None:
        return
    cache = inserted["cache"]
    hmp.printf("    Cache mode:       " + ("writeback" if cache["writeback"] else "writethrough")
               + (", direct" if cache["direct"] else "")
               + (", ignore flushes" if cache["no-flush"] else "") + "\n")
    if "backing_file" in inserted:
        hmp.printf(f"    Backing file:     {inserted['backing_file']} "
                   f"(chain depth: {inserted['backing_file_depth']})\n")
    if inserted["detect_zeroes"] != "off":
        hmp.printf(f"    Detect zeroes:    {inserted['detect_zeroes']}\n")
    if any(inserted[k] for k in ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr")):
        fields = " ".join(f"{k}={inserted.get(k, 0)}" for k in (
            "bps", "bps_rd", "bps_wr", "bps_max", "bps_rd_max", "bps_wr_max", "iops",
            "iops_rd", "iops_wr", "iops_max", "iops_rd_max", "iops_wr_max", "iops_size"))
        hmp.printf(f"    I/O throttling:   {fields} group={inserted.get('group', '(null)')}\n")
    if verbose:
        hmp.printf("\nImages:\n")
        image: dict[str, Any] | None = inserted["image"]
        while image is not None:
            hmp.printf(image_info_dump(image))
            image = image.get("backing-image")


def _checked(hmp: Hmp, name: str) -> Any:
    """A query's result with members in schema order (as its C struct has them)."""
    return check_return(hmp.machine.schema.commands[name], hmp.qmp(name))


def hmp_info_block(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_block: BlockBackends, then (with -n, or for a device name that
    is no BlockBackend's) named nodes."""
    device = args.get("device")
    verbose = bool(args.get("verbose"))
    nodes = bool(args.get("nodes"))
    printed = False
    blocks = [] if nodes else _checked(hmp, "query-block")
    for i, info in enumerate(blocks):
        if device is not None and device != info["device"]:
            continue
        if i:
            hmp.printf("\n")
        _print_block_info(hmp, info, info.get("inserted"), verbose)
        printed = True
    if (device is None and not nodes) or printed:
        return
    for i, node in enumerate(_checked(hmp, "query-named-block-nodes")):
        if device is not None and device != node["node-name"]:
            continue
        if i:
            hmp.printf("\n")
        _print_block_info(hmp, None, node, verbose)


def hmp_info_blockstats(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_blockstats."""
    for entry in hmp.qmp("query-blockstats"):
        if "device" not in entry:
            continue
        st = entry["stats"]
        fields = " ".join(f"{k}={st.get(k, 0)}" for k in (
            "rd_bytes", "wr_bytes", "rd_operations", "wr_operations", "flush_operations",
            "wr_total_time_ns", "rd_total_time_ns", "flush_total_time_ns", "rd_merged",
            "wr_merged", "idle_time_ns"))
        hmp.printf(f"{entry['device']}: {fields}\n")


def hmp_info_block_jobs(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_block_jobs."""
    jobs = hmp.qmp("query-block-jobs")
    if not jobs:
        hmp.printf("No active jobs\n")
        return
    for job in jobs:
        what = (f"Streaming device {job['device']}" if job["type"] == "stream"
                else f"Type {job['type']}, device {job['device']}")
        hmp.printf(f"{what}: Completed {job['offset']} of {job['len']} bytes, "
                   f"speed limit {job['speed']} bytes/s\n")


# -- drives -----------------------------------------------------------------------------


def _default_interface(hmp: Hmp) -> str:
    """MachineClass block_default_type: IF_IDE on the PC machines, IF_NONE on `none`."""
    return "ide" if hmp.machine.board.firmware else "none"


def _drive_opts(layer: BlockLayer, text: str) -> dict[str, str]:
    """blockdev.c drive_def: `text` as a QemuOpts of group `drive` (no implied key);
    an id some drive already has is a duplicate."""
    lst = GROUPS["drive"]
    store = OptsStore(GROUPS)
    for blk in layer.monitor_backends:
        if blk.legacy_dinfo is not None and blk.name:
            store.create(lst, blk.name, False, ())
    opts = store.parse(lst, text, False, ()).freeze()
    out = {"id": opts.id} if opts.id is not None else {}
    out.update(opts.as_dict())
    return out


def hmp_drive_add(hmp: Hmp, args: Args) -> None:
    """device-hotplug.c hmp_drive_add: a drive (drive_new) that only `if=none` may
    keep; `-n` adds a node (blockdev.c hmp_drive_add_node)."""
    layer = block_layer(hmp)
    text = args["opts"]
    if args.get("node"):
        _drive_add_node(hmp, layer, text)
        return
    try:
        opts = _drive_opts(layer, text)
    except OptsError as err:
        hmp.printf(f"{err.message}\n{err.hint}")
        return
    try:
        result = add_drive(layer, list(opts.items()), default_if=_default_interface(hmp),
                           units_per_default_bus=1 if "q35" in hmp.machine.options.machine_type
                           else 0)
    except GenericError as err:
        hmp.report(err)
        return
    for warning in result.warnings:
        prefix = "warning: " if warning.startswith("disabling copy-on-read") else ""
        hmp.printf(prefix + warning + "\n")
    dinfo = result.dinfo
    if dinfo.devaddr is not None:
        hmp.printf("Parameter addr not supported\n")
    elif dinfo.type == "none":
        hmp.printf("OK\n")
        return
    else:
        hmp.printf(f"Can't hot-add drive to type {IF_NAMES.index(dinfo.type)}\n")
    layer.monitor_remove_blk(result.blk)
    layer.blk_unref(result.blk)


def _drive_add_node(hmp: Hmp, layer: BlockLayer, text: str) -> None:
    """blockdev.c hmp_drive_add_node: the options as blockdev-add's, flat."""
    try:
        options: dict[str, Any] = _drive_opts(layer, text)
    except OptsError as err:
        hmp.printf(f"{err.message}\n{err.hint}")
        return
    if not options.get("node-name"):
        hmp.printf("'node-name' needs to be specified\n")
        return
    try:
        bs = bds_tree_init(layer, options)
    except GenericError as err:
        hmp.report(err)
        return
    bs.monitor_owned = True
    layer.monitor_nodes.append(bs)


def hmp_drive_del(hmp: Hmp, args: Args) -> None:
    """blockdev.c hmp_drive_del."""
    drive_del(block_layer(hmp), args["id"])


def hmp_commit(hmp: Hmp, args: Args) -> None:
    """blockdev.c hmp_commit -> block/commit.c bdrv_commit (`blockdev.sync_commit`):
    the device's top image is written into its backing file and emptied; `all` does
    it for every device with a backing file (blk_commit_all)."""
    from blockdev.iotypes import BlockIOError
    from blockdev.sync_commit import bdrv_commit, commit_all

    layer = block_layer(hmp)
    device = args["device"]

    def report(text: str) -> None:
        hmp.printf(text + "\n")

    try:
        if device == "all":
            commit_all(layer, report)
        else:
            blk = layer.blk_by_name(device)
            if blk is None:
                hmp.printf(f"Device '{device}' not found\n")
                return
            if not blk.is_available():
                hmp.printf(f"Device '{device}' has no medium\n")
                return
            assert blk.bs is not None
            bdrv_commit(layer, blk.bs, report)
    except BlockIOError as e:
        hmp.printf(f"'commit' error for '{device}': {os.strerror(e.errno)}\n")


# -- commands that are QMP commands ------------------------------------------------------


def hmp_block_resize(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_block_resize."""
    hmp.qmp("block_resize", args["size"], device=args["device"])


def hmp_block_passwd(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_block_passwd."""
    hmp.qmp("block_passwd", args["password"], device=args["device"])


def hmp_block_set_io_throttle(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_block_set_io_throttle: the six limits, by device name."""
    hmp.qmp("block_set_io_throttle", {
        "device": args["device"],
        **{k: args[k] for k in ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr")}})


def hmp_eject(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_eject."""
    hmp.qmp("eject", device=args["device"], force=bool(args.get("force")))


def hmp_change(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_change: `vnc` (its password, without one given, is asked for on a
    terminal), else blockdev-change-medium."""
    device, target = args["device"], args["target"]
    arg = args.get("arg")
    read_only = args.get("read-only-mode")
    if device == "vnc":
        if read_only is not None:
            hmp.printf("Parameter 'read-only-mode' is invalid for VNC\n")
            return
        if target in ("passwd", "password") and arg is None:
            if hmp.readline is None:
                hmp.printf("terminal does not support password prompting\n")
                return
            hmp.read_password(lambda password: _vnc_password(hmp, password))
            return
        from vmm.hmp.display import vnc_password

        vnc_password(hmp, lambda: hmp.qmp("change", "vnc", target, arg))
        return
    if read_only is not None:
        qapi_enum_parse(hmp, "BlockdevChangeReadOnlyMode", read_only)
    hmp.qmp("blockdev-change-medium", target, device=device, format=arg,
            read_only_mode=read_only)


def _vnc_password(hmp: Hmp, password: str) -> None:
    """hmp.c hmp_change_read_arg: qmp_change_vnc_password, its error ignored."""
    from vmm.hmp.display import vnc_password

    try:
        vnc_password(hmp, lambda: hmp.qmp("change", "vnc", "password", password))
    except GenericError:
        pass


def hmp_snapshot_blkdev(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_snapshot_blkdev."""
    filename = args.get("snapshot-file")
    if filename is None:
        raise GenericError("Parameter 'snapshot-file' is missing")
    hmp.qmp("blockdev-snapshot-sync", filename, device=args["device"],
            format=args.get("format"),
            mode="existing" if args.get("reuse") else "absolute-paths")


def hmp_snapshot_blkdev_internal(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_snapshot_blkdev_internal."""
    hmp.qmp("blockdev-snapshot-internal-sync", args["device"], args["name"])


def hmp_snapshot_delete_blkdev_internal(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_snapshot_delete_blkdev_internal."""
    hmp.qmp("blockdev-snapshot-delete-internal-sync", args["device"], id=args.get("id"),
            name=args["name"])


def hmp_block_stream(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_block_stream: the job is named after the device."""
    hmp.qmp("block-stream", args["device"], job_id=args["device"], base=args.get("base"),
            speed=args.get("speed"), on_error="report")


def hmp_block_job_cancel(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_block_job_cancel."""
    hmp.qmp("block-job-cancel", args["device"], force=bool(args.get("force")))


def hmp_block_job_set_speed(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_block_job_set_speed."""
    hmp.qmp("block-job-set-speed", args["device"], args["speed"])


def hmp_drive_mirror(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_drive_mirror."""
    mirror: dict[str, Any] = {"device": args["device"], "target": args["target"]}
    if "format" in args:
        mirror["format"] = args["format"]
    mirror.update(sync="full" if args.get("full") else "top",
                  mode="existing" if args.get("reuse") else "absolute-paths", unmap=True)
    hmp.qmp("drive-mirror", mirror)


def hmp_drive_backup(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_drive_backup."""
    backup: dict[str, Any] = {"device": args["device"], "target": args["target"]}
    if "format" in args:
        backup["format"] = args["format"]
    backup.update(sync="full" if args.get("full") else "top",
                  mode="existing" if args.get("reuse") else "absolute-paths")
    if args.get("compress"):
        backup["compress"] = True
    hmp.qmp("drive-backup", backup)


def hmp_qemu_io(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_qemu_io: the named BlockBackend, else a temporary one (all
    permissions shared) on the node of that name; then qemu-io's command
    (`vmm.hmp.qemu_io`, whose output goes to the process's stdout)."""
    from vmm.hmp.qemu_io import qemuio_command

    layer = block_layer(hmp)
    device = args["device"]
    blk = layer.blk_by_name(device)
    local = None
    if blk is None:
        bs = layer.lookup_bs(None, device)
        blk = local = layer.blk_new_with_bs(bs, 0, PERM_ALL)
    try:
        qemuio_command(hmp, blk, args["command"])
    finally:
        if local is not None:
            layer.blk_unref(local)


def hmp_nbd_server_start(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_nbd_server_start: start the server on socket_parse's address, and with
    -a export every block device with a medium (-w: writable); if one export fails
    the server stops again."""
    from schema.opts.sockets import socket_address_legacy, socket_parse

    writable = bool(args.get("writable"))
    if writable and not args.get("all"):
        raise GenericError("-w only valid together with -a")
    hmp.qmp("nbd-server-start", socket_address_legacy(socket_parse(args["uri"])))
    if not args.get("all"):
        return
    for info in hmp.qmp("query-block"):
        if "inserted" not in info:
            continue
        try:
            hmp.qmp("nbd-server-add", info["device"], writable=writable)
        except GenericError:
            hmp.qmp("nbd-server-stop")
            raise


def hmp_nbd_server_add(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_nbd_server_add."""
    hmp.qmp("nbd-server-add", args["device"], writable=bool(args.get("writable")))
