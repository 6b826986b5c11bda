"""vmm.qmp: the QMP monitor, from bytes to handler calls and back.

`wire` (framing over QEMU's JSON dialect), `dispatch` (QEMU's request checks, the
schema visitor, the handler table), `monitor` (one monitor per chardev: greeting,
negotiation, event delivery, the outbox policy).
"""
