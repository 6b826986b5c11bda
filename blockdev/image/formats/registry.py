"""Per-format image readers and writers behind `blockdev.image.file`.

`DRIVERS` lists QEMU 2.11's format drivers that have a probe or that image creation
can name, in the order `bdrv_probe_all` walks them (block.c registers drivers with
QLIST_INSERT_HEAD, so the walk is the reverse of the link order of
block/Makefile.objs, and on equal scores the first in this order wins).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs

from blockdev.image.formats import (
    luks,
    luks_data,
    others,
    qcow,
    qcow2,
    qcow2_data,
    qed,
    raw,
    vdi,
    vhdx,
    vmdk,
    vpc,
)
from blockdev.image.formats.base import DataContext, FormatData, OpenContext
from blockdev.image.formats.facts import ImageFacts

ChildPerms = Literal["format", "filter"]


@attrs.frozen
class Driver:
    """One format driver: its probe, its reader (None: recognised but refused),
    how it derives its file child's permissions, the creation options
    (`bdrv_img_create` refuses a backing file or format the driver has no option
    for), and `open_data`, which gives the data engine of a node `open` accepted
    (raises ImageError with QEMU's text where the driver's open would still fail,
    e.g. a wrong LUKS passphrase)."""

    name: str
    probe: Callable[[bytes, str], int] | None
    open: Callable[[OpenContext], ImageFacts] | None
    child_perms: ChildPerms = "format"
    create_options: frozenset[str] | None = None
    open_data: Callable[[DataContext], FormatData] | None = None

    @property
    def can_create(self) -> bool:
        return self.create_options is not None


def _opts(*names: str) -> frozenset[str]:
    return frozenset(("size", *names))


DRIVERS: tuple[Driver, ...] = (
    Driver(
        name="luks",
        probe=luks.probe,
        open=luks.open_image,
        open_data=luks_data.open_data,
        create_options=_opts(
            "key-secret",
            "cipher-alg",
            "cipher-mode",
            "ivgen-alg",
            "ivgen-hash-alg",
            "hash-alg",
            "iter-time",
        ),
    ),
    Driver(
        name="parallels",
        probe=others.probe_parallels,
        open=None,
        create_options=_opts("cluster_size"),
    ),
    Driver(
        name="vhdx",
        probe=vhdx.probe,
        open=vhdx.open_image,
        open_data=vhdx.open_data,
        create_options=_opts("log_size", "block_size", "subformat", "block_state_zero"),
    ),
    Driver(
        name="qed",
        probe=qed.probe,
        open=qed.open_image,
        open_data=qed.open_data,
        create_options=_opts("backing_file", "backing_fmt", "cluster_size", "table_size"),
    ),
    Driver(
        name="qcow2",
        probe=qcow2.probe,
        open=qcow2.open_image,
        open_data=qcow2_data.open_data,
        create_options=_opts(
            "compat",
            "backing_file",
            "backing_fmt",
            "encryption",
            "encrypt.format",
            "cluster_size",
            "preallocation",
            "lazy_refcounts",
            "refcount_bits",
        ),
    ),
    Driver(name="dmg", probe=others.probe_dmg, open=None),
    Driver(
        name="vpc",
        probe=vpc.probe,
        open=vpc.open_image,
        open_data=vpc.open_data,
        create_options=_opts("subformat", "force_size"),
    ),
    Driver(name="bochs", probe=others.probe_bochs, open=None),
    Driver(name="cloop", probe=others.probe_cloop, open=None),
    Driver(
        name="vmdk",
        probe=vmdk.probe,
        open=vmdk.open_image,
        open_data=vmdk.open_data,
        create_options=_opts(
            "adapter_type",
            "backing_file",
            "compat6",
            "hwversion",
            "subformat",
            "zeroed_grain",
        ),
    ),
    Driver(
        name="vdi",
        probe=vdi.probe,
        open=vdi.open_image,
        open_data=vdi.open_data,
        create_options=_opts("static"),
    ),
    Driver(
        name="qcow",
        probe=qcow.probe,
        open=qcow.open_image,
        open_data=qcow.open_data,
        create_options=_opts("backing_file", "encryption", "encrypt.format"),
    ),
    Driver(
        name="raw",
        probe=raw.probe,
        open=raw.open_image,
        open_data=lambda ctx: raw.open_data(ctx, _probed_name),
        child_perms="filter",
        create_options=_opts("preallocation", "nocow"),
    ),
)

BY_NAME: dict[str, Driver] = {d.name: d for d in DRIVERS}


def probe(buf: bytes, filename: str) -> Driver | None:
    """bdrv_probe_all: the first driver with the highest positive score."""
    best: Driver | None = None
    best_score = 0
    for driver in DRIVERS:
        if driver.probe is None:
            continue
        score = driver.probe(buf, filename)
        if score > best_score:
            best, best_score = driver, score
    return best


def _probed_name(buf: bytes) -> str | None:
    """The driver bdrv_probe_all picks for a first sector (raw's write check)."""
    found = probe(buf, "")
    return None if found is None else found.name
