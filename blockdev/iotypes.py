"""The vocabulary of the block data path: its error, the block status answer, and
the two interfaces between the generic path and the drivers.

Leaf of the `blockdev` layer's data path (`BlockIOError` is the format engines'
class, `blockdev.image.formats.base`, re-exported): `blockdev.io` (the generic request path)
and the drivers' I/O callbacks (`blockdev.drivers.dataio` and its neighbours) both
import it, and neither imports the other's module at load time: the generic path
hands itself to each callback as a `GenericIO`, so a driver reaches its children
through the same checks and notifiers (QEMU's drivers call bdrv_co_preadv on their
children the same way [block/io.c]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

# One error for the whole data path: the format engines raise it too.
from blockdev.image.formats.base import BlockIOError

__all__ = ["BlockIOError", "BlockStatus", "DataOps", "GenericIO"]

if TYPE_CHECKING:
    from blockdev.graph import Node


@attrs.frozen
class BlockStatus:
    """bdrv_co_block_status's answer for [offset, offset+pnum).

    `allocated`: this node (or, for *_above, a node of the chain) decides the
    content (BDRV_BLOCK_ALLOCATED); `data`/`zero` as BDRV_BLOCK_DATA/ZERO;
    `offset` is the host offset in `file` when known (BDRV_BLOCK_OFFSET_VALID)."""

    pnum: int
    data: bool = False
    zero: bool = False
    allocated: bool = False
    offset: int | None = None
    file: Node | None = None


class GenericIO(Protocol):
    """The generic path as a driver calls it for its children (`blockdev.io`)."""

    def bdrv_pread(self, bs: Node, offset: int, length: int) -> bytes: ...

    def bdrv_pwrite(self, bs: Node, offset: int, data: bytes, *, fua: bool = False) -> None: ...

    def bdrv_pwrite_zeroes(self, bs: Node, offset: int, length: int, *,
                           may_unmap: bool = False) -> None: ...

    def bdrv_pdiscard(self, bs: Node, offset: int, length: int) -> None: ...

    def bdrv_flush(self, bs: Node) -> None: ...

    def bdrv_truncate(self, bs: Node, size: int) -> None: ...

    def bdrv_getlength(self, bs: Node) -> int: ...

    def bdrv_block_status(self, bs: Node, offset: int, length: int) -> BlockStatus: ...


class DataOps(Protocol):
    """A driver's I/O callbacks; the generic path has checked the request."""

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes: ...

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None: ...

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int,
                      unmap: bool) -> None: ...

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None: ...

    def flush(self, io: GenericIO, bs: Node) -> None: ...

    def block_status(self, io: GenericIO, bs: Node, offset: int,
                     length: int) -> BlockStatus: ...
