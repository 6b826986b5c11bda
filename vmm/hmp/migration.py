"""HMP commands of migration: hmp.c's `migrate*` and `info migrate*` (QEMU 2.11).

`vmm` layer: each command calls the QMP handler it wraps (`Hmp.qmp`) and prints
hmp.c's text [hmp.c hmp_info_migrate, hmp_info_migrate_capabilities,
hmp_info_migrate_parameters, hmp_info_migrate_cache_size, hmp_migrate,
hmp_migrate_set_parameter; migration/migration.c migration_global_dump].
"""

from __future__ import annotations

from typing import Any

from schema.errors import GenericError
from schema.opts.cutils import Errno, do_strtosz, qemu_strtoi64
from schema.opts.qemuopts import parse_size
from vmm.hmp.commands import qapi_enum_parse
from vmm.hmp.interpreter import Hmp

Args = dict[str, Any]
INT64_MAX = 2**63 - 1


def hmp_migrate(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_migrate. Without -d QEMU suspends a terminal monitor until the
    migration ends, checking it every second (hmp_migrate_status_cb: "Completed N %"
    while a block migration runs); a monitor without a terminal (human-monitor-command)
    cannot be suspended and says so."""
    blk, inc = bool(args.get("blk")), bool(args.get("inc"))
    hmp.qmp("migrate", args["uri"], blk=blk, inc=inc)
    if args.get("detach"):
        return
    if hmp.suspend is None or hmp.write is None:
        hmp.printf("terminal does not allow synchronous migration, continuing detached\n")
        return
    resume = hmp.suspend()
    write = hmp.write
    machine = hmp.machine

    def status() -> None:
        """hmp_migrate_status_cb."""
        info = hmp.qmp("query-migrate")
        if "status" not in info or info["status"] in ("active", "setup"):
            disk = info.get("disk")
            if disk is not None:
                progress = (disk["transferred"] * 100 // disk["total"]
                            if disk["remaining"] and disk["total"] else 100)
                write(f"Completed {progress} %\r")
            machine.call_later(1.0, status)
            return
        if blk or inc:
            write("\n")
        if "error-desc" in info:
            machine.error_report(info["error-desc"])  # outside a command: not the monitor's
        resume()

    machine.call_later(0.0, status)


def _f2(value: float) -> str:
    """printf's %0.2f."""
    return f"{value:0.2f}"


def hmp_info_migrate(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_migrate."""
    info = hmp.qmp("query-migrate")
    caps = hmp.qmp("query-migrate-capabilities")
    out = hmp.printf
    out("globals: store-global-state=1, only_migratable=0, send-configuration=1, "
        "send-section-footer=1\n")
    if "status" in info and caps:
        out("capabilities: " + "".join(f"{c['capability']}: {'on' if c['state'] else 'off'} "
                                       for c in caps) + "\n")
    if "status" in info:
        out(f"Migration status: {info['status']}")
        if info["status"] == "failed" and "error-desc" in info:
            out(f" ({info['error-desc']})\n")
        else:
            out("\n")
        out(f"total time: {info.get('total-time', 0)} milliseconds\n")
        if "expected-downtime" in info:
            out(f"expected downtime: {info['expected-downtime']} milliseconds\n")
        if "downtime" in info:
            out(f"downtime: {info['downtime']} milliseconds\n")
        if "setup-time" in info:
            out(f"setup: {info['setup-time']} milliseconds\n")
    ram = info.get("ram")
    if ram is not None:
        out(f"transferred ram: {ram['transferred'] >> 10} kbytes\n")
        out(f"throughput: {_f2(ram['mbps'])} mbps\n")
        out(f"remaining ram: {ram['remaining'] >> 10} kbytes\n")
        out(f"total ram: {ram['total'] >> 10} kbytes\n")
        out(f"duplicate: {ram['duplicate']} pages\n")
        out(f"skipped: {ram['skipped']} pages\n")
        out(f"normal: {ram['normal']} pages\n")
        out(f"normal bytes: {ram['normal-bytes'] >> 10} kbytes\n")
        out(f"dirty sync count: {ram['dirty-sync-count']}\n")
        out(f"page size: {ram['page-size'] >> 10} kbytes\n")
        if ram["dirty-pages-rate"]:
            out(f"dirty pages rate: {ram['dirty-pages-rate']} pages\n")
        if ram["postcopy-requests"]:
            out(f"postcopy request count: {ram['postcopy-requests']}\n")
    disk = info.get("disk")
    if disk is not None:
        out(f"transferred disk: {disk['transferred'] >> 10} kbytes\n")
        out(f"remaining disk: {disk['remaining'] >> 10} kbytes\n")
        out(f"total disk: {disk['total'] >> 10} kbytes\n")
    cache = info.get("xbzrle-cache")
    if cache is not None:
        out(f"cache size: {cache['cache-size']} bytes\n")
        out(f"xbzrle transferred: {cache['bytes'] >> 10} kbytes\n")
        out(f"xbzrle pages: {cache['pages']} pages\n")
        out(f"xbzrle cache miss: {cache['cache-miss']}\n")
        out(f"xbzrle cache miss rate: {_f2(cache['cache-miss-rate'])}\n")
        out(f"xbzrle overflow : {cache['overflow']}\n")
    if "cpu-throttle-percentage" in info:
        out(f"cpu throttle percentage: {info['cpu-throttle-percentage']}\n")


def hmp_info_migrate_capabilities(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_migrate_capabilities."""
    for cap in hmp.qmp("query-migrate-capabilities"):
        hmp.printf(f"{cap['capability']}: {'on' if cap['state'] else 'off'}\n")


def hmp_info_migrate_parameters(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_migrate_parameters: the units it prints, strings quoted."""
    p = hmp.qmp("query-migrate-parameters")
    for name, value in p.items():
        if name in ("tls-creds", "tls-hostname"):
            text = f"'{value}'"
        elif name == "max-bandwidth":
            text = f"{value} bytes/second"
        elif name == "downtime-limit":
            text = f"{value} milliseconds"
        elif name == "block-incremental":
            text = "on" if value else "off"
        else:
            text = str(value)
        hmp.printf(f"{name}: {text}\n")


def hmp_info_migrate_cache_size(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_migrate_cache_size (its spelling)."""
    hmp.printf(f"xbzrel cache size: {hmp.qmp('query-migrate-cache-size') >> 10} kbytes\n")


_INTS = ("compress-level", "compress-threads", "decompress-threads", "cpu-throttle-initial",
         "cpu-throttle-increment", "downtime-limit", "x-checkpoint-delay",
         "x-multifd-channels", "x-multifd-page-count")


def hmp_migrate_set_parameter(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_migrate_set_parameter: the value is read as the parameter's type by
    the string input visitor (max-bandwidth in MiB by default)."""
    param = qapi_enum_parse(hmp, "MigrationParameter", args["parameter"])
    text: str = args["value"]
    value: Any
    if param in _INTS:
        err, value, _ = qemu_strtoi64(text)
        if err is not Errno.OK or not text:
            raise GenericError(f"Parameter '{param}' expects an int64 value or range")
    elif param in ("tls-creds", "tls-hostname"):
        value = text
    elif param == "max-bandwidth":
        err, value, end = do_strtosz(text, "M")
        if err is not Errno.OK or end < len(text) or value > INT64_MAX:
            raise GenericError(f"Invalid size {text}")
    elif param == "block-incremental":
        lowered = text.lower()
        if lowered in ("on", "yes", "true"):
            value = True
        elif lowered in ("off", "no", "false"):
            value = False
        else:
            raise GenericError(f"Parameter '{param}' expects boolean")
    else:  # xbzrle-cache-size
        value = parse_size(param, text)
        if value > INT64_MAX:
            raise GenericError(f"Invalid size {text}")
    hmp.qmp("migrate-set-parameters", {param: value})

