"""Guest requests and the error policy of block devices (rerror/werror,
BLOCK_IO_ERROR, the io-error stop).

Pure model of the `blockdev` layer. No guest code runs, so requests come from a
model hook (`submit`), which the guest workload (`blockdev.workload`), the control
plane and tests call on behalf of the guest; node-level fault injection
(`set_fault`) makes a node fail reads or writes with an errno. A request goes
through the real data path (`blockdev.io`, with `account=True`, as a device model
does), and what follows is QEMU 2.11's:

* a successful request counts in the BlockBackend's statistics; on its way down,
  every node it passes moves its `wr_highest_offset`, dirties its enabled bitmaps
  and fires its write threshold (BLOCK_WRITE_THRESHOLD, then the threshold
  disarms) [block/accounting.c, block/io.c, block/write-threshold.c];
* a failed request is counted as failed, then the device's error policy picks an
  action [block/block-backend.c blk_get_error_action, blk_error_action]:
  `report`/`ignore` send BLOCK_IO_ERROR only; `stop` sets the io-status, sends
  BLOCK_IO_ERROR, asks the machine to stop with `io-error`, and keeps the request
  queued in the device until `cont` retries it (block.md §8, runstate.md §4.7).

It sits below `blockdev.layer`: its functions take a `GuestIOContext`, the part of
the block layer guest I/O uses (the BlockBackends, node lookup, the host).
"""

from __future__ import annotations

import errno as errno_mod
import os
from typing import Protocol

import attrs

from blockdev.graph import Backend, Node
from blockdev.host import BlockHost
from schema.errors import GenericError


@attrs.frozen
class Request:
    op: str  # "read" | "write" | "zero" | "flush"
    offset: int = 0
    length: int = 0
    data: bytes | None = None  # a write's bytes (else `pattern` repeated)
    pattern: int = 0


class GuestIOContext(Protocol):
    """What guest I/O uses of the block layer (`BlockLayer` is one)."""

    @property
    def host(self) -> BlockHost: ...

    @property
    def backends(self) -> list[Backend]: ...

    @property
    def monitor_backends(self) -> list[Backend]: ...

    def find_node(self, name: str) -> Node | None: ...


def error_action(policy: str, error: int) -> str:
    """blk_get_error_action."""
    if policy == "enospc":
        return "stop" if error == errno_mod.ENOSPC else "report"
    if policy == "stop":
        return "stop"
    if policy == "ignore":
        return "ignore"
    return "report"


def set_fault(layer: GuestIOContext, node_name: str, op: str, error: int | None) -> None:
    """The fault-injection hook: `node_name` fails `op` ("read", "write", "flush" or
    "all") with `error` (an errno) until cleared with None."""
    bs = layer.find_node(node_name)
    if bs is None:
        raise GenericError(f"Cannot find node {node_name}")
    faults = _faults(bs)
    for kind in (("read", "write", "flush") if op == "all" else (op,)):
        if error is None:
            faults.pop(kind, None)
        else:
            faults[kind] = error


def _faults(bs: Node) -> dict[str, int]:
    return bs.faults


def submit(layer: GuestIOContext, blk: Backend, req: Request) -> str:
    """One guest request through `blk`, through the data path (`blockdev.io`).
    Returns "ok", "error" (reported to the guest), "ignored" (error hidden from the
    guest) or "queued" (VM stopping)."""
    from blockdev import io

    bs = blk.bs
    if bs is None or not blk.is_available() or bs.driver is None:
        return "error"
    try:
        if req.op == "read":
            io.blk_pread(blk, req.offset, req.length, account=True)
        elif req.op == "write":
            data = req.data if req.data is not None else bytes([req.pattern]) * req.length
            io.blk_pwrite(blk, req.offset, data, account=True)
        elif req.op == "zero":
            io.blk_pwrite_zeroes(blk, req.offset, req.length, account=True)
        else:
            io.blk_flush(blk, account=True)
    except io.BlockIOError as e:
        if e.errno in _INVALID and _is_invalid(blk, req):
            return "error"
        return _handle_error(layer, blk, req, e.errno)
    return "ok"


_INVALID = (errno_mod.EIO, errno_mod.EPERM, errno_mod.ENOMEDIUM)


def _is_invalid(blk: Backend, req: Request) -> bool:
    """Was the request refused before it went (counted invalid, not failed)?"""
    bs = blk.bs
    if bs is None or req.op == "flush":
        return False
    size = bs.length()
    if req.offset < 0 or req.length < 0 or req.offset + req.length > size:
        return True
    return req.op != "read" and blk.is_read_only()


def _handle_error(layer: GuestIOContext, blk: Backend, req: Request, error: int) -> str:
    """The device model's error path: pick the action, then blk_error_action."""
    is_read = req.op == "read"
    policy = blk.on_read_error if is_read else blk.on_write_error
    action = error_action(policy, error)
    bs = blk.bs
    data: dict[str, object] = {
        "device": blk.display_name(),
        "node-name": bs.node_name if bs is not None else "",
        "operation": "read" if is_read else "write",
        "action": action,
    }
    if blk.iostatus_is_enabled():
        data["nospace"] = error == errno_mod.ENOSPC
    data["reason"] = os.strerror(error)
    if action == "stop":
        if blk.iostatus_is_enabled():
            blk.iostatus_set_err(error)
        layer.host.emit("BLOCK_IO_ERROR", data)
        layer.host.request_vmstop("io-error")
        blk.queued.append(req)
        return "queued"
    layer.host.emit("BLOCK_IO_ERROR", data)
    return "ignored" if action == "ignore" else "error"


def on_cont(layer: GuestIOContext) -> None:
    """qmp_cont's blk_iostatus_reset for every named BlockBackend, then the devices
    retry what they queued (their VM-state-change handlers run as the VM starts)."""
    for blk in layer.monitor_backends:
        blk.iostatus_reset()
    for blk in list(layer.backends):
        pending, blk.queued = blk.queued, []
        for req in pending:
            submit(layer, blk, req)
