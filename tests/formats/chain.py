"""What the request path does above a format engine, for the engine tests: read a
node's bytes with the backing fall-through that block_status asks for."""

from __future__ import annotations

from blockdev.image.formats.base import FormatData


def chain_read(eng: FormatData, backing: FormatData | None, offset: int, length: int) -> bytes:
    """The engine's own bytes where block_status says allocated, the backing
    node's where it says unallocated, zeros past the end of the node."""
    out = bytearray(length)
    pos = 0
    end = min(offset + length, eng.length)
    while offset + pos < end:
        status = eng.block_status(offset + pos, end - offset - pos)
        assert status.pnum > 0
        if status.allocated:
            out[pos:pos + status.pnum] = eng.read(offset + pos, status.pnum)
        elif backing is not None:
            out[pos:pos + status.pnum] = chain_read(backing, None, offset + pos, status.pnum)
        pos += status.pnum
    return bytes(out)
