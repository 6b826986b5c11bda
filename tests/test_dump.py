"""screendump, memsave, pmemsave and dump-guest-memory: real files, QEMU's errors.

Pins QEMU 2.11's ui/console.c qmp_screendump / ppm_save, cpus.c qmp_memsave /
qmp_pmemsave, dump.c qmp_dump_guest_memory / dump_init / dump_process /
dump_cleanup / qmp_query_dump / qmp_query_dump_guest_memory_capability, qmp.c
qmp_stop / qmp_cont (refused during a dump) and util/osdep.c qemu_open (the
/dev/fdset/N form); reference `devices.md` §9.3, §10 and §11. ImageMagick's
`identify` and binutils' `readelf` read what is written.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devices.dump.elf import ElfCore, Filter, GuestBlock, machine_blocks
from devices.dump.job import CHUNK, RATE
from tests.conftest import VmHarness

needs_identify = pytest.mark.skipif(shutil.which("identify") is None,
                                    reason="ImageMagick's identify is not installed")
needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None,
                                   reason="binutils' readelf is not installed")


def run(tvm: VmHarness, name: str, **arguments: Any) -> dict[str, Any]:
    talk = tvm.talk()
    reply = talk.execute(name, {k.replace("_", "-"): v for k, v in arguments.items()})
    return reply


def err(tvm: VmHarness, name: str, **arguments: Any) -> tuple[str, str]:
    reply = run(tvm, name, **arguments)
    return reply["error"]["class"], reply["error"]["desc"]


def events(tvm: VmHarness) -> list[Any]:
    seen: list[Any] = []
    tvm.machine.events.subscribe(lambda e: seen.append((e.name, e.data)))
    return seen


# -- screendump ---------------------------------------------------------------------------


@needs_identify
def test_screendump_writes_a_ppm_identify_reads(vm_cmdline: Callable[..., VmHarness],
                                                tmp_path: Path) -> None:
    """ppm_save: "P6\\n640 480\\n255\\n" and 640x480 RGB triplets (921615 bytes)."""
    path = tmp_path / "screen.ppm"
    assert run(vm_cmdline("-S"), "screendump", filename=str(path)) == {"return": {}}
    data = path.read_bytes()
    assert data.startswith(b"P6\n640 480\n255\n") and len(data) == 921615
    out = subprocess.run(["identify", str(path)], capture_output=True, text=True, check=True)
    assert "PPM 640x480" in out.stdout


def test_screendump_without_a_console(vm_cmdline: Callable[..., VmHarness],
                                      tmp_path: Path) -> None:
    """qmp_screendump: no console (no display adapter) -> its message."""
    for argv in (["-M", "none"], ["-vga", "none"], ["-nodefaults"]):
        assert err(vm_cmdline("-S", *argv), "screendump", filename=str(tmp_path / "x")) == (
            "GenericError", "There is no QemuConsole I can screendump from.")


def test_screendump_open_failure(vm_cmdline: Callable[..., VmHarness]) -> None:
    """ppm_save: "failed to open file '%s': %s"."""
    assert err(vm_cmdline("-S"), "screendump", filename="/nonexistent/x.ppm") == (
        "GenericError",
        "failed to open file '/nonexistent/x.ppm': No such file or directory")


def test_screendump_write_failure_removes_nothing_it_cannot(
        vm_cmdline: Callable[..., VmHarness]) -> None:
    """ppm_save: a failed write -> "failed to write to file '%s': %s" (and unlink)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    assert err(vm_cmdline("-S"), "screendump", filename="/dev/full") == (
        "GenericError", "failed to write to file '/dev/full': No space left on device")


def test_screendump_to_an_fdset(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """qemu_open("/dev/fdset/N"): a dup of the set's write-only descriptor; a set
    without one of that access mode -> EACCES, an unknown set -> ENOENT."""
    tvm = vm_cmdline("-S")
    talk = tvm.talk()
    path = tmp_path / "via-fdset.ppm"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    assert talk.execute("add-fd", {"fdset-id": 3})["error"]  # nothing passed
    talk.send({"execute": "add-fd", "arguments": {"fdset-id": 3}}, fds=[fd])
    assert talk.execute("screendump", {"filename": "/dev/fdset/3"}) == {"return": {}}
    assert path.read_bytes().startswith(b"P6\n640 480\n255\n")
    rd = os.open(path, os.O_RDONLY)
    talk.send({"execute": "add-fd", "arguments": {"fdset-id": 4}}, fds=[rd])
    assert talk.execute("screendump", {"filename": "/dev/fdset/4"})["error"]["desc"] == (
        "failed to open file '/dev/fdset/4': Permission denied")
    assert talk.execute("screendump", {"filename": "/dev/fdset/9"})["error"]["desc"] == (
        "failed to open file '/dev/fdset/9': No such file or directory")


def test_hmp_screendump(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """hmp_screendump calls qmp_screendump; errors print as hmp_handle_error does."""
    tvm = vm_cmdline("-S")
    path = tmp_path / "hmp.ppm"
    assert run(tvm, "human-monitor-command",
               command_line=f"screendump {path}")["return"] == ""
    assert path.stat().st_size == 921615


# -- memsave / pmemsave -------------------------------------------------------------------


def test_memsave_reads_through_the_cpu(vm_cmdline: Callable[..., VmHarness],
                                       tmp_path: Path) -> None:
    """qmp_memsave: with paging off, the virtual address is the physical one; the
    file holds exactly `size` bytes of guest memory."""
    tvm = vm_cmdline("-S")
    tvm.vm.memory.write(0x1000, b"guest bytes")
    path = tmp_path / "mem"
    assert run(tvm, "memsave", val=0x1000, size=11, filename=str(path)) == {"return": {}}
    assert path.read_bytes() == b"guest bytes"
    assert run(tvm, "pmemsave", val=0xFFF, size=13, filename=str(path)) == {"return": {}}
    assert path.read_bytes() == b"\0guest bytes\0"


def test_memsave_cpu_index(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """qmp_memsave: qemu_get_cpu(cpu-index) NULL -> QERR_INVALID_PARAMETER_VALUE."""
    tvm = vm_cmdline("-S", "-smp", "2")
    path = str(tmp_path / "m")
    assert run(tvm, "memsave", val=0, size=1, filename=path, cpu_index=1) == {"return": {}}
    for index in (2, -1):
        assert err(tvm, "memsave", val=0, size=1, filename=path, cpu_index=index) == (
            "GenericError", "Parameter 'cpu-index' expects a CPU number")
    assert err(vm_cmdline("-S", "-M", "none"), "memsave", val=0, size=1, filename=path) == (
        "GenericError", "Parameter 'cpu-index' expects a CPU number")


def test_memsave_open_error(vm_cmdline: Callable[..., VmHarness]) -> None:
    """error_setg_file_open: "Could not open '%s': %s"."""
    assert err(vm_cmdline("-S"), "memsave", val=0, size=1, filename="/nonexistent/m") == (
        "GenericError", "Could not open '/nonexistent/m': No such file or directory")


def test_memsave_write_error(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qmp_memsave: fwrite short -> QERR_IO_ERROR."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    assert err(vm_cmdline("-S"), "memsave", val=0, size=1 << 20, filename="/dev/full") == (
        "GenericError", "An IO error has occurred")


# -- dump-guest-memory --------------------------------------------------------------------


def test_capability_and_query_before_any_dump(vm_cmdline: Callable[..., VmHarness]) -> None:
    """§10.2: elf and kdump-zlib in this build; query-dump all zero before a dump."""
    tvm = vm_cmdline("-S")
    assert run(tvm, "query-dump-guest-memory-capability")["return"] == {
        "formats": ["elf", "kdump-zlib"]}
    assert run(tvm, "query-dump")["return"] == {"status": "none", "completed": 0, "total": 0}


def test_total_counts_ram_and_roms() -> None:
    """guest_phys_blocks_append keeps RAM and ROM: 128 MiB on pc dumps 134348800
    bytes (devices.md §10.2, verified)."""
    blocks = machine_blocks("pc-i440fx-2.11", 128 << 20)
    assert sum(b.size for b in blocks) == 134348800


@needs_readelf
def test_elf_core_readelf_accepts(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """A running VM: STOP, DUMP_COMPLETED, RESUME, then the reply; readelf reads the
    core: ELF64 (a block ends at 4 GiB), EM_386 (the vCPU is not in long mode),
    a PT_NOTE then one PT_LOAD per block, memory at the offsets they name."""
    tvm = vm_cmdline("-m", "16M")
    tvm.vm.memory.write(0x100000, b"KERNEL")
    seen = events(tvm)
    path = tmp_path / "core"
    assert run(tvm, "dump-guest-memory", paging=False,
               protocol=f"file:{path}") == {"return": {}}
    total = 16908288
    assert seen == [("STOP", None),
                    ("DUMP_COMPLETED", {"result": {"status": "completed",
                                                   "completed": total, "total": total}}),
                    ("RESUME", None)]
    out = subprocess.run(["readelf", "-h", "-l", str(path)], capture_output=True, text=True,
                         check=True).stdout
    assert "ELF64" in out and "CORE (Core file)" in out and "Intel 80386" in out
    assert out.count("LOAD") == 5 and out.count("NOTE") == 1
    data = path.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 32)
    loads = [struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i) for i in range(1, 6)]
    kernel = next(p for p in loads if p[4] == 0x100000)
    assert data[kernel[2]:kernel[2] + 6] == b"KERNEL"
    assert len(data) == loads[-1][2] + loads[-1][5]
    assert os.stat(path).st_mode & 0o777 == 0o400  # qemu_open(..., S_IRUSR)


@needs_readelf
def test_elf32_on_a_machine_below_4g(vm_cmdline: Callable[..., VmHarness],
                                     tmp_path: Path) -> None:
    """cpu_get_dump_info: no block above 4 GiB and no long mode -> ELFCLASS32."""
    path = tmp_path / "core32"
    tvm = vm_cmdline("-S", "-M", "none", "-m", "4M", "-cpu", "qemu64")
    assert run(tvm, "dump-guest-memory", paging=True, protocol=f"file:{path}") == {
        "return": {}}
    out = subprocess.run(["readelf", "-h", "-l", str(path)], capture_output=True, text=True,
                         check=True).stdout
    assert "ELF32" in out and out.count("LOAD") == 1


def test_paging_merges_adjacent_blocks() -> None:
    """With paging (and a guest without it) virtual = physical, and adjacent mappings
    merge (memory_mapping_list_add_merge_sorted); without, each block has its own."""
    blocks = machine_blocks("pc-i440fx-2.11", 16 << 20)
    plain = ElfCore.plan(blocks, nr_cpus=1, paging=False, flt=None)
    paged = ElfCore.plan(blocks, nr_cpus=1, paging=True, flt=None)
    assert struct.unpack_from("<H", plain.head, 56)[0] == 6
    assert struct.unpack_from("<H", paged.head, 56)[0] == 4  # 0-a0000, c0000-1M, 1M.., bios


def test_filter_trims_blocks() -> None:
    """begin/length: only the intersecting parts are dumped."""
    blocks = [GuestBlock(0, 0x1000), GuestBlock(0x2000, 0x4000)]
    core = ElfCore.plan(blocks, nr_cpus=0, paging=False, flt=Filter(0x800, 0x2000))
    assert core.segments == ((0x800, 0x800), (0x2000, 0x800))


def test_paused_vm_has_no_stop_or_resume(vm_cmdline: Callable[..., VmHarness],
                                         tmp_path: Path) -> None:
    """dump_init: only a running VM is stopped (and resumed by dump_cleanup)."""
    tvm = vm_cmdline("-S", "-m", "2M")
    seen = events(tvm)
    run(tvm, "dump-guest-memory", paging=False, protocol=f"file:{tmp_path / 'c'}")
    assert [name for name, _ in seen] == ["DUMP_COMPLETED"]


def test_detached_dump_progresses_in_machine_time(vm_cmdline: Callable[..., VmHarness],
                                                  tmp_path: Path) -> None:
    """detach: STOP, the reply, query-dump `active` with growing `completed` (stop and
    cont refused meanwhile), then DUMP_COMPLETED and RESUME."""
    tvm = vm_cmdline("-m", "64M")
    seen = events(tvm)
    assert run(tvm, "dump-guest-memory", paging=False, protocol=f"file:{tmp_path / 'c'}",
               detach=True) == {"return": {}}
    assert seen == [("STOP", None)]
    assert run(tvm, "query-status")["return"]["status"] == "save-vm"
    tvm.tick(0)
    first = run(tvm, "query-dump")["return"]
    assert first["status"] == "active" and CHUNK <= first["completed"] < 2 * CHUNK
    assert err(tvm, "stop") == ("GenericError", "There is a dump in process, please wait.")
    assert err(tvm, "cont") == ("GenericError", "There is a dump in process, please wait.")
    assert err(tvm, "dump-guest-memory", paging=False, protocol="file:/tmp/x") == (
        "GenericError", "There is a dump in process, please wait.")
    tvm.tick(CHUNK / RATE)
    assert run(tvm, "query-dump")["return"]["completed"] >= first["completed"] + CHUNK
    tvm.tick(1)
    total = 64 * 2**20 + 128 * 1024
    assert seen[1:] == [("DUMP_COMPLETED", {"result": {"status": "completed",
                                                       "completed": total, "total": total}}),
                        ("RESUME", None)]
    assert os.path.getsize(tmp_path / "c") > total


@pytest.mark.parametrize(("arguments", "desc"), [
    ({"format": "kdump-zlib", "paging": True},
     "kdump-compressed format doesn't support paging or filter"),
    ({"format": "kdump-zlib", "begin": 0, "length": 4096},
     "kdump-compressed format doesn't support paging or filter"),
    ({"begin": 0}, "Parameter 'length' is missing"),
    ({"length": 4096}, "Parameter 'begin' is missing"),
    ({"format": "kdump-lzo"}, "kdump-lzo is not available now"),
    ({"format": "kdump-snappy"}, "kdump-snappy is not available now"),
    ({"protocol": "fd:nope"}, "File descriptor named 'nope' has not been found"),
    ({"protocol": "file:/nonexistent/core"},
     "Could not open '/nonexistent/core': No such file or directory"),
    ({"protocol": "tcp:localhost:1"}, "Invalid parameter 'protocol'"),
    # dump_calculate_size comes before get_start_block: a range outside every block
    # has nothing to dump (get_start_block's "Invalid parameter 'begin'" is unreachable).
    ({"begin": 0x200000000, "length": 4096}, "dump: no guest memory to dump"),
])
def test_dump_errors(vm_cmdline: Callable[..., VmHarness], tmp_path: Path,
                     arguments: dict[str, Any], desc: str) -> None:
    """qmp_dump_guest_memory's checks in order, and dump_init's (§10.2 table)."""
    arguments = {"paging": False, "protocol": f"file:{tmp_path / 'c'}", **arguments}
    assert err(vm_cmdline("-S"), "dump-guest-memory", **arguments) == ("GenericError", desc)


def test_nothing_to_dump(vm_factory: Callable[..., VmHarness], tmp_path: Path) -> None:
    """dump_init: no guest memory -> "dump: no guest memory to dump" (status failed)."""
    tvm = vm_factory(machine_type="none", ram_bytes=0, start_paused=True)
    assert err(tvm, "dump-guest-memory", paging=False,
               protocol=f"file:{tmp_path / 'c'}") == (
        "GenericError", "dump: no guest memory to dump")
    assert run(tvm, "query-dump")["return"]["status"] == "failed"


def test_incoming_migration(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """qmp_dump_guest_memory: runstate inmigrate -> refused first."""
    tvm = vm_cmdline("-incoming", "defer")
    assert err(tvm, "dump-guest-memory", paging=False, protocol="bogus") == (
        "GenericError", "Dump not allowed during incoming migration.")


def test_write_failure_is_reported_in_the_event(vm_cmdline: Callable[..., VmHarness]) -> None:
    """dump_process: DUMP_COMPLETED unconditionally, with the error; then the reply."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    tvm = vm_cmdline("-S", "-m", "2M")
    seen = events(tvm)
    assert err(tvm, "dump-guest-memory", paging=False, protocol="file:/dev/full") == (
        "GenericError", "dump: failed to write elf header")
    assert seen[0][1]["error"] == "dump: failed to write elf header"
    assert seen[0][1]["result"]["status"] == "failed"


def test_dump_to_a_getfd_descriptor(vm_cmdline: Callable[..., VmHarness],
                                    tmp_path: Path) -> None:
    """`fd:NAME`: the monitor's descriptor is consumed (monitor_get_fd)."""
    tvm = vm_cmdline("-S", "-m", "2M")
    talk = tvm.talk()
    path = tmp_path / "via-fd"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    talk.send({"execute": "getfd", "arguments": {"fdname": "core"}}, fds=[fd])
    assert talk.execute("dump-guest-memory", {"paging": False,
                                              "protocol": "fd:core"}) == {"return": {}}
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert talk.execute("closefd", {"fdname": "core"})["error"]["desc"] == (
        "File descriptor named 'core' not found")


def test_hmp_dump_and_info_dump(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """hmp_dump_guest_memory (file: prefix) and hmp_info_dump."""
    tvm = vm_cmdline("-S", "-m", "2M")
    hmp = tvm.talk()
    assert hmp.execute("human-monitor-command", {"command-line": "info dump"})["return"] == (
        "Status: none\r\n")
    assert hmp.execute("human-monitor-command", {
        "command-line": f"dump-guest-memory {tmp_path / 'c'}"})["return"] == ""
    assert hmp.execute("human-monitor-command", {"command-line": "info dump"})["return"] == (
        "Status: completed\r\n")


def test_write_failure_on_a_passed_pipe(vm_cmdline: Callable[..., VmHarness]) -> None:
    """fd_write_vmcore fails (EPIPE: nobody reads the pipe): the header's message in
    DUMP_COMPLETED and in the reply; the VM the dump stopped runs again."""
    tvm = vm_cmdline("-m", "2M")
    seen = events(tvm)
    talk = tvm.talk()
    r, w = os.pipe()
    os.close(r)
    talk.send({"execute": "getfd", "arguments": {"fdname": "p"}}, fds=[w])
    assert talk.execute("dump-guest-memory", {"paging": False, "protocol": "fd:p"}) == {
        "error": {"class": "GenericError", "desc": "dump: failed to write elf header"}}
    assert seen == [("STOP", None),
                    ("DUMP_COMPLETED", {"result": {"status": "failed", "completed": 0,
                                                   "total": 2 * 2**20 + 128 * 1024},
                                        "error": "dump: failed to write elf header"}),
                    ("RESUME", None)]


def unflatten(data: bytes) -> bytes:
    """makedumpfile -R: the records of the flattened format put back in place."""
    assert data[:12] == b"makedumpfile"
    assert struct.unpack_from(">qq", data, 16) == (1, 1)  # TYPE_FLAT_HEADER, version 1
    out = bytearray()
    pos = 4096
    while True:
        offset, size = struct.unpack_from(">qq", data, pos)
        pos += 16
        if (offset, size) == (-1, -1):
            assert pos == len(data)
            return bytes(out)
        if len(out) < offset + size:
            out.extend(bytes(offset + size - len(out)))
        out[offset:offset + size] = data[pos:pos + size]
        pos += size


def test_kdump_zlib_core(vm_cmdline: Callable[..., VmHarness], tmp_path: Path) -> None:
    """create_kdump_vmcore: makedumpfile's flattened format around a kdump file
    (header version 6, zlib, the CPUs' notes, both bitmaps, page descriptors; zero
    pages share one page, others are zlib-compressed at Z_BEST_SPEED)."""
    import zlib

    tvm = vm_cmdline("-S", "-m", "2M")
    tvm.vm.memory.write(0x100000, b"KERNEL" * 100)
    path = tmp_path / "kdump"
    assert run(tvm, "dump-guest-memory", paging=False, protocol=f"file:{path}",
               format="kdump-zlib") == {"return": {}}
    total = 2 * 2**20 + 128 * 1024
    assert run(tvm, "query-dump")["return"] == {"status": "completed", "completed": total,
                                                "total": total}
    kdump = unflatten(path.read_bytes())
    assert kdump[:8] == b"KDUMP   "
    version, = struct.unpack_from("<I", kdump, 8)
    machine = kdump[12 + 65 * 4:12 + 65 * 5].rstrip(b"\0")
    (status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr, _, _, _, _,
     nr_cpus) = struct.unpack_from("<10I", kdump, 12 + 390 + 22)
    assert (version, machine, status, block_size, nr_cpus) == (6, b"x86_64", 1, 4096, 1)
    assert max_mapnr == 0x100000  # the BIOS ends at 4 GiB
    offset_note, note_len = struct.unpack_from("<QQ", kdump, 4096 + 48)
    assert note_len == 616 and kdump[offset_note + 12:offset_note + 16] == b"CORE"
    bitmap = 4096 * (1 + sub_hdr_size)
    assert kdump[bitmap] & 1 and kdump[bitmap + 0x100 // 8] & 1  # pfn 0, pfn 0x100
    assert kdump[bitmap + 0xa0 // 8] == 0  # 0xa0000: VGA memory, not dumped
    descs = 4096 * (1 + sub_hdr_size + bitmap_blocks)
    pfns = [pfn for pfn in range(max_mapnr) if kdump[bitmap + pfn // 8] >> (pfn % 8) & 1]
    assert len(pfns) * 4096 == total
    index = pfns.index(0x100)
    offset, size, flags, _ = struct.unpack_from("<QIIQ", kdump, descs + 24 * index)
    assert flags == 1 and size < 4096
    assert zlib.decompress(kdump[offset:offset + size]).startswith(b"KERNEL" * 100)
    zero_offset, zero_size, zero_flags, _ = struct.unpack_from("<QIIQ", kdump, descs)
    assert (zero_size, zero_flags) == (4096, 0) and not any(
        kdump[zero_offset:zero_offset + 4096])


def test_hmp_dump_z_is_kdump_zlib(vm_cmdline: Callable[..., VmHarness],
                                  tmp_path: Path) -> None:
    """hmp_dump_guest_memory -z: DUMP_GUEST_MEMORY_FORMAT_KDUMP_ZLIB; -l is not
    compiled in."""
    tvm = vm_cmdline("-S", "-m", "2M")
    talk = tvm.talk()
    out = talk.execute("human-monitor-command",
                       {"command-line": f"dump-guest-memory -z {tmp_path / 'k'}"})
    assert out == {"return": ""}
    assert (tmp_path / "k").read_bytes()[:12] == b"makedumpfile"
    out = talk.execute("human-monitor-command",
                       {"command-line": f"dump-guest-memory -l {tmp_path / 'l'}"})
    assert out == {"return": "kdump-lzo is not available now\r\n"}
