"""The machine's memory: `-m size,slots,maxmem`, the hot-plug memory region, pc-dimm
and nvdimm on memory backends, and the ACPI memory hotplug slots the guest answers.

Pure model of the `devices` layer [hw/i386/pc.c pc_memory_init, pc_dimm_plug,
pc_dimm_unplug_request; hw/mem/pc-dimm.c pc_dimm_memory_plug, pc_dimm_get_free_addr,
pc_dimm_get_free_slot, pc_dimm_realize; hw/acpi/memory_hotplug.c
acpi_memory_ospm_status, acpi_memory_hotplug_write; qmp.c qmp_query_memory_devices,
qmp_query_memory_size_summary; numa.c qmp_query_memdev]. `MemoryDevices` belongs to
one machine; `devices.machine_commands` answers QMP from it and plays the guest's
_OST answers. Errors raise `GenericError` with QEMU's text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from schema.errors import DeviceNotFound, GenericError
from schema.qobject.qdict import GHashTable

GIB = 1 << 30
TARGET_PAGE_SIZE = 4096
# hw/acpi/memory_hotplug.h ACPI_MAX_RAM_SLOTS
ACPI_MAX_RAM_SLOTS = 256


@attrs.frozen
class MemoryBackend:
    """A memory-backend-* object (`-object`/object-add) as query-memdev shows it."""

    id: str
    size: int
    merge: bool = True
    dump: bool = True
    prealloc: bool = False
    policy: str = "default"
    host_nodes: tuple[int, ...] = ()
    # host page size (file backends: their hugepage size); pc_dimm_plug's alignment
    page_size: int = TARGET_PAGE_SIZE

    def query(self) -> dict[str, Any]:
        """numa.c query_memdev: one Memdev."""
        return {"id": self.id, "size": self.size, "merge": self.merge, "dump": self.dump,
                "prealloc": self.prealloc, "policy": self.policy,
                "host-nodes": list(self.host_nodes)}


@attrs.define(kw_only=True)
class Dimm:
    """A realized pc-dimm or nvdimm."""

    id: str | None
    qom_path: str
    backend: MemoryBackend
    addr: int
    slot: int
    node: int = 0
    nvdimm: bool = False
    hotplugged: bool = False
    removing: bool = False  # device_del asked the guest (memory_hotplug.c is_removing)
    # qdev's end of the unplug once the guest ejected it (False: nobody took it)
    ejected: Callable[[], bool] | None = None

    def query(self) -> dict[str, Any]:
        data: dict[str, Any] = {"addr": self.addr, "size": self.backend.size,
                                "slot": self.slot, "node": self.node,
                                "memdev": f"/objects/{self.backend.id}",
                                "hotplugged": self.hotplugged, "hotpluggable": True}
        if self.id is not None:
            data["id"] = self.id
        return {"type": "dimm", "data": data}


@attrs.define(kw_only=True)
class OstSlot:
    """memory_hotplug.c MemStatus: the last _OST the guest wrote for a slot."""

    source: int = 0
    status: int = 0


@attrs.define(kw_only=True)
class MemoryDevices:
    """RAM, the hot-plug region and its DIMMs, of one machine."""

    ram_size: int
    max_ram_size: int
    slots: int
    pc: bool  # has_reserved_memory and an ACPI device (a PC board)
    above_4g: int = 0
    new_glib: bool = False  # GLib >= 2.60's hash order (MachineOptions.new_glib)
    backends: dict[str, MemoryBackend] = attrs.Factory(dict)
    # The machine's /objects when it has them (devices.objects): every object id in
    # creation order, and the memory backends among them; else `backends`.
    objects: Callable[[], tuple[list[str], dict[str, MemoryBackend]]] | None = None
    dimms: list[Dimm] = attrs.Factory(list)
    ost: list[OstSlot] = attrs.Factory(list)

    def __attrs_post_init__(self) -> None:
        self.ost = [OstSlot() for _ in range(self.slots if self.pc else 0)]

    # -- the hot-plug region (pc_memory_init) -----------------------------------------

    @property
    def hotplug_base(self) -> int:
        """ROUND_UP(4 GiB + RAM above 4 GiB, 1 GiB)."""
        start = (1 << 32) + self.above_4g
        return (start + GIB - 1) // GIB * GIB

    @property
    def hotplug_size(self) -> int:
        """maxmem - size, plus 1 GiB of alignment room per slot (enforce_aligned_dimm);
        0: memory hotplug is not enabled."""
        if not self.pc or self.max_ram_size <= self.ram_size:
            return 0
        return self.max_ram_size - self.ram_size + GIB * self.slots

    # -- plug ------------------------------------------------------------------------

    def backend_busy(self, backend_id: str) -> bool:
        """host_memory_backend_is_mapped: a DIMM uses it (object-del's "in use")."""
        return any(d.backend.id == backend_id for d in self.dimms)

    def realize(self, *, memdev: str | None, node: int = 0) -> MemoryBackend:
        """pc-dimm.c pc_dimm_realize: the backend's checks."""
        if memdev is None:
            raise GenericError("'memdev' property is not set")
        backend = self._backends()[1].get(memdev)
        if backend is None:  # qom/object.c object_resolve_link
            raise DeviceNotFound(f"Device '{memdev}' not found")
        if self.backend_busy(memdev):
            raise GenericError(f"can't use already busy memdev: {memdev}")
        if node > 0:
            raise GenericError(f"'DIMM property node has value {node}' which exceeds the "
                               "number of numa nodes: 1")
        return backend

    def plug(self, *, ident: str | None, qom_path: str, memdev: str | None, addr: int = 0,
             slot: int = -1, node: int = 0, nvdimm: bool = False, nvdimm_enabled: bool = False,
             hotplugged: bool) -> Dimm:
        """pc_dimm_realize, then pc.c pc_dimm_plug -> pc_dimm_memory_plug."""
        backend = self.realize(memdev=memdev, node=node)
        align = backend.page_size
        if not self.pc:
            raise GenericError("memory hotplug is not enabled: missing acpi device")
        if nvdimm and not nvdimm_enabled:
            raise GenericError("nvdimm is not enabled: missing 'nvdimm' in '-M'")
        addr = self._free_addr(addr or None, align, backend.size)
        used = sum(d.backend.size for d in self.dimms)
        total = self.max_ram_size - self.ram_size
        if used + backend.size > total:
            raise GenericError(f"not enough space, currently 0x{used:x} in use of total "
                               f"hot pluggable 0x{total:x}")
        slot = self._free_slot(None if slot == -1 else slot)
        dimm = Dimm(id=ident, qom_path=qom_path, backend=backend, addr=addr, slot=slot,
                    node=node, nvdimm=nvdimm, hotplugged=hotplugged)
        self.dimms.append(dimm)
        return dimm

    def _free_addr(self, hint: int | None, align: int, size: int) -> int:
        """pc-dimm.c pc_dimm_get_free_addr: first fit, DIMMs in address order."""
        start, space = self.hotplug_base, self.hotplug_size
        end = start + space
        if not space:
            raise GenericError("memory hotplug is not enabled, please add maxmem option")
        if hint is not None and hint % align:
            raise GenericError(f"address must be aligned to 0x{align:x} bytes")
        if size % align:
            raise GenericError(f"backend memory size must be multiple of 0x{align:x}")
        new = hint if hint is not None else start
        for dimm in sorted(self.dimms, key=lambda d: d.addr):
            dsize = dimm.backend.size
            if dimm.addr < new + size and new < dimm.addr + dsize:
                if hint is not None:
                    raise GenericError(f"address range conflicts with '{dimm.id}'")
                new = (dimm.addr + dsize + align - 1) // align * align
        if new < start:
            raise GenericError(f"can't add memory [0x{new:x}:0x{size:x}] at 0x{start:x}")
        if new + size > end:
            raise GenericError(f"can't add memory [0x{new:x}:0x{size:x}] beyond 0x{end:x}")
        return new

    def _free_slot(self, hint: int | None) -> int:
        """pc-dimm.c pc_dimm_get_free_slot."""
        used = {d.slot for d in self.dimms}
        if hint is not None:
            if hint >= self.slots:
                raise GenericError(f"invalid slot# {hint}, should be less than {self.slots}")
            if hint in used:
                raise GenericError(f"slot {hint} is busy")
            return hint
        for slot in range(self.slots):
            if slot not in used:
                return slot
        raise GenericError("no free slots available")

    # -- unplug ----------------------------------------------------------------------

    def unplug_request(self, dimm: Dimm) -> None:
        """pc.c pc_dimm_unplug_request -> memory_hotplug.c acpi_memory_unplug_request_cb
        (the guest is notified; `removing` until it ejects)."""
        if dimm.nvdimm:
            raise GenericError("nvdimm device hot unplug is not supported yet.")
        dimm.removing = True

    def unplug(self, dimm: Dimm) -> None:
        """pc.c pc_dimm_unplug: the guest ejected it."""
        self.dimms.remove(dimm)

    def find(self, ident: str) -> Dimm | None:
        for dimm in self.dimms:
            if dimm.id == ident or dimm.qom_path == ident:
                return dimm
        return None

    def by_slot(self, slot: int) -> Dimm | None:
        for dimm in self.dimms:
            if dimm.slot == slot:
                return dimm
        return None

    # -- ACPI _OST (memory_hotplug.c) ---------------------------------------------------

    def write_ost(self, slot: int, source: int, status: int) -> dict[str, Any]:
        """The guest wrote _OST event and status for `slot`: the ACPIOSTInfo of the
        ACPI_DEVICE_OST event."""
        self.ost[slot].source = source
        self.ost[slot].status = status
        return self.ost_info(slot)

    def ost_info(self, slot: int) -> dict[str, Any]:
        """memory_hotplug.c acpi_memory_device_status."""
        info: dict[str, Any] = {"slot": str(slot), "slot-type": "DIMM",
                                "source": self.ost[slot].source,
                                "status": self.ost[slot].status}
        dimm = self.by_slot(slot)
        if dimm is not None and dimm.id is not None:
            info["device"] = dimm.id
        return info

    # -- queries ---------------------------------------------------------------------

    def query_memory_devices(self) -> list[dict[str, Any]]:
        """qmp.c qmp_query_memory_devices -> pc_dimm_build_list: address order."""
        return [d.query() for d in sorted(self.dimms, key=lambda d: d.addr)]

    def query_memory_size_summary(self) -> dict[str, Any]:
        """qmp.c qmp_query_memory_size_summary: x86_64 links the real
        get_plugged_memory_size (hw/mem/pc-dimm.c), so plugged-memory is always
        there: the realized DIMMs' sizes."""
        return {"base-memory": self.ram_size,
                "plugged-memory": sum(d.backend.size for d in self.dimms)}

    def query_memdev(self) -> list[dict[str, Any]]:
        """numa.c qmp_query_memdev: object_child_foreach over /objects' property
        table (a GHashTable: "type", then the children) prepending each backend, so
        the reply is that table's iteration order reversed."""
        table = GHashTable(self.new_glib)
        ids, backends = self._backends()
        for key in ("type", *ids):
            table.insert(key)
        order = [k for k in table.keys if k is not None and k in backends]
        return [backends[k].query() for k in reversed(order)]

    def _backends(self) -> tuple[list[str], dict[str, MemoryBackend]]:
        if self.objects is not None:
            return self.objects()
        return list(self.backends), self.backends
