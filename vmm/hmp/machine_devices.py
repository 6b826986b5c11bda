"""HMP commands of the CPUs, memory devices, balloon, TPM and rocker, with 2.11's texts.

`vmm` layer, loaded with the HMP interpreter. Each is hmp.c's (or monitor.c's)
function of the same name over the QMP command it calls; the numbers are printed
as its printf formats print them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmm.hmp.commands import Args, _c_int
from vmm.hmp.interpreter import HmpNotImplemented

if TYPE_CHECKING:
    from vmm.hmp.interpreter import Hmp


def monitor_cpu_index(hmp: Hmp, cpus: list[dict[str, Any]]) -> int | None:
    """monitor.c monitor_get_cpu_index: the CPU `cpu` chose while it exists, else
    the first CPU (which mon_get_cpu then selects)."""
    indexes = [c["CPU"] for c in cpus]
    if hmp.cpu_index is None or hmp.cpu_index not in indexes:
        hmp.cpu_index = indexes[0] if indexes else None
    return hmp.cpu_index


def hmp_info_cpus(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_cpus: `*` marks the monitor's CPU."""
    cpus = hmp.qmp("query-cpus")
    current = monitor_cpu_index(hmp, cpus)
    for cpu in cpus:
        mark = "*" if cpu["CPU"] == current else " "
        line = f"{mark} CPU #{cpu['CPU']}: pc=0x{cpu['pc'] & 0xFFFFFFFFFFFFFFFF:016x}"
        if cpu["halted"]:
            line += " (halted)"
        hmp.printf(f"{line} thread_id={cpu['thread_id']}\n")


def hmp_cpu(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_cpu -> monitor.c monitor_set_cpu (qemu_get_cpu by index)."""
    index = _c_int(args["index"])
    if index not in [c["CPU"] for c in hmp.qmp("query-cpus")]:
        hmp.printf("invalid CPU index\n")
        return
    hmp.cpu_index = index


def hmp_hotpluggable_cpus(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_hotpluggable_cpus."""
    slots = hmp.qmp("query-hotpluggable-cpus")
    hmp.printf("Hotpluggable CPUs:\n")
    for slot in slots:
        hmp.printf(f"  type: \"{slot['type']}\"\n"
                   f"  vcpus_count: \"{slot['vcpus-count']}\"\n")
        if "qom-path" in slot:
            hmp.printf(f"  qom_path: \"{slot['qom-path']}\"\n")
        hmp.printf("  CPUInstance Properties:\n")
        for name in ("node-id", "socket-id", "core-id", "thread-id"):
            if name in slot["props"]:
                hmp.printf(f"    {name}: \"{slot['props'][name]}\"\n")


def hmp_info_balloon(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_balloon: MiB."""
    info = hmp.qmp("query-balloon")
    hmp.printf(f"balloon: actual={info['actual'] >> 20}\n")


def hmp_info_memdev(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_memdev (host nodes through the string output visitor, which
    writes a list of numbers as ranges: "0-2,5")."""
    for m in hmp.qmp("query-memdev"):
        hmp.printf(f"memory backend: {m.get('id', '(null)')}\n"
                   f"  size:  {m['size']}\n"
                   f"  merge: {'true' if m['merge'] else 'false'}\n"
                   f"  dump: {'true' if m['dump'] else 'false'}\n"
                   f"  prealloc: {'true' if m['prealloc'] else 'false'}\n"
                   f"  policy: {m['policy']}\n"
                   f"  host nodes: {_ranges(m['host-nodes'])}\n")
    hmp.printf("\n")


def _ranges(numbers: list[int]) -> str:
    """qapi/string-output-visitor.c: a list of integers as ranges."""
    out: list[str] = []
    for n in sorted(set(numbers)):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ",".join(out)


def hmp_info_memory_devices(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_memory_devices."""
    for dev in hmp.qmp("query-memory-devices"):
        d = dev["data"]
        hmp.printf(f"Memory device [{dev['type']}]: \"{d.get('id', '')}\"\n"
                   f"  addr: 0x{d['addr']:x}\n"
                   f"  slot: {d['slot']}\n"
                   f"  node: {d['node']}\n"
                   f"  size: {d['size']}\n"
                   f"  memdev: {d['memdev']}\n"
                   f"  hotplugged: {'true' if d['hotplugged'] else 'false'}\n"
                   f"  hotpluggable: {'true' if d['hotpluggable'] else 'false'}\n")


def hmp_info_memory_size_summary(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_memory_size_summary."""
    info = hmp.qmp("query-memory-size-summary")
    hmp.printf(f"base memory: {info['base-memory']}\n")
    if "plugged-memory" in info:
        hmp.printf(f"plugged memory: {info['plugged-memory']}\n")


def hmp_info_tpm(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_tpm: nothing without a -tpmdev."""
    for _ in hmp.qmp("query-tpm"):
        raise HmpNotImplemented("info tpm")  # no -tpmdev backend is modelled


def hmp_rocker(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_rocker (its error through hmp_handle_error)."""
    hmp.qmp("query-rocker", name=args["name"])


def hmp_rocker_ports(hmp: Hmp, args: Args) -> None:
    hmp.qmp("query-rocker-ports", name=args["name"])


def hmp_rocker_of_dpa_flows(hmp: Hmp, args: Args) -> None:
    hmp.qmp("query-rocker-of-dpa-flows", name=args["name"], tbl_id=args.get("tbl_id"))


def hmp_rocker_of_dpa_groups(hmp: Hmp, args: Args) -> None:
    hmp.qmp("query-rocker-of-dpa-groups", name=args["name"], type=args.get("type"))
