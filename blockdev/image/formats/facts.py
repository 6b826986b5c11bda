"""The values an image reader returns: what QEMU 2.11 knows about an image after
opening it, in the shape of its QAPI types (qapi/block-core.json ImageInfo,
SnapshotInfo, ImageInfoSpecific; qapi/crypto.json QCryptoBlockInfoLUKS).

Optional members are `None` exactly when 2.11 leaves them out of the reply
[block/qapi.c bdrv_query_image_info and the drivers' get_info/get_specific_info];
`as_qapi()` renders a value as the JSON object the wire edge sends (member order is
irrelevant, QEMU's own order is hash order).
"""

from __future__ import annotations

from typing import Literal

import attrs

from schema.jsontypes import JSONObject, JSONValue


@attrs.frozen
class SnapshotInfo:
    """One internal snapshot [qapi SnapshotInfo; block/qapi.c
    bdrv_query_snapshot_info_list]."""

    id: str
    name: str
    vm_state_size: int
    date_sec: int
    date_nsec: int
    vm_clock_sec: int
    vm_clock_nsec: int

    def as_qapi(self) -> JSONObject:
        return {
            "id": self.id,
            "name": self.name,
            "vm-state-size": self.vm_state_size,
            "date-sec": self.date_sec,
            "date-nsec": self.date_nsec,
            "vm-clock-sec": self.vm_clock_sec,
            "vm-clock-nsec": self.vm_clock_nsec,
        }


@attrs.frozen
class LuksSlot:
    """[qapi/crypto.json QCryptoBlockInfoLUKSSlot]: `iters`/`stripes` only for an
    active slot [crypto/block-luks.c qcrypto_block_luks_get_info]."""

    active: bool
    key_offset: int
    iters: int | None = None
    stripes: int | None = None

    def as_qapi(self) -> JSONObject:
        out: JSONObject = {"active": self.active}
        if self.iters is not None:
            out["iters"] = self.iters
        if self.stripes is not None:
            out["stripes"] = self.stripes
        out["key-offset"] = self.key_offset
        return out


@attrs.frozen
class LuksInfo:
    """[qapi/crypto.json QCryptoBlockInfoLUKS]: the `luks` format-specific data, and
    the `encrypt` member of a LUKS-encrypted qcow2."""

    cipher_alg: str
    cipher_mode: str
    ivgen_alg: str
    hash_alg: str
    payload_offset: int
    master_key_iters: int
    uuid: str
    slots: tuple[LuksSlot, ...]
    ivgen_hash_alg: str | None = None

    def as_qapi(self) -> JSONObject:
        out: JSONObject = {
            "cipher-alg": self.cipher_alg,
            "cipher-mode": self.cipher_mode,
            "ivgen-alg": self.ivgen_alg,
        }
        if self.ivgen_hash_alg is not None:
            out["ivgen-hash-alg"] = self.ivgen_hash_alg
        out.update(
            {
                "hash-alg": self.hash_alg,
                "payload-offset": self.payload_offset,
                "master-key-iters": self.master_key_iters,
                "uuid": self.uuid,
                "slots": [slot.as_qapi() for slot in self.slots],
            }
        )
        return out


@attrs.frozen
class Qcow2Encryption:
    """[qapi ImageInfoSpecificQCow2Encryption]: `aes` carries no data."""

    format: Literal["aes", "luks"]
    luks: LuksInfo | None = None

    def as_qapi(self) -> JSONObject:
        out: JSONObject = {"format": self.format}
        if self.luks is not None:
            out.update(self.luks.as_qapi())
        return out


@attrs.frozen
class Qcow2Specific:
    """[qapi ImageInfoSpecificQCow2; block/qcow2.c qcow2_get_specific_info]: compat
    "0.10" images report only `compat` and `refcount-bits`."""

    compat: str
    refcount_bits: int
    lazy_refcounts: bool | None = None
    corrupt: bool | None = None
    encrypt: Qcow2Encryption | None = None

    kind: Literal["qcow2"] = "qcow2"

    def as_qapi(self) -> JSONObject:
        data: JSONObject = {"compat": self.compat}
        if self.lazy_refcounts is not None:
            data["lazy-refcounts"] = self.lazy_refcounts
        if self.corrupt is not None:
            data["corrupt"] = self.corrupt
        data["refcount-bits"] = self.refcount_bits
        if self.encrypt is not None:
            data["encrypt"] = self.encrypt.as_qapi()
        return {"type": "qcow2", "data": data}


@attrs.frozen
class VmdkExtentInfo:
    """One entry of the vmdk `extents` list, an ImageInfo with only the members
    [block/vmdk.c vmdk_get_extent_info] fills: `format` is the extent type of the
    descriptor line ("FLAT", "SPARSE", ...) and the empty string for the extent of a
    monolithic sparse file (2.11 leaves it NULL and the output visitor writes "")."""

    filename: str
    format: str
    virtual_size: int
    cluster_size: int | None = None
    compressed: bool | None = None

    def as_qapi(self) -> JSONObject:
        out: JSONObject = {
            "filename": self.filename,
            "format": self.format,
            "virtual-size": self.virtual_size,
        }
        if self.cluster_size is not None:
            out["cluster-size"] = self.cluster_size
        if self.compressed is not None:
            out["compressed"] = self.compressed
        return out


@attrs.frozen
class VmdkSpecific:
    """[qapi ImageInfoSpecificVmdk; block/vmdk.c vmdk_get_specific_info]."""

    create_type: str
    cid: int
    parent_cid: int
    extents: tuple[VmdkExtentInfo, ...]

    kind: Literal["vmdk"] = "vmdk"

    def as_qapi(self) -> JSONObject:
        return {
            "type": "vmdk",
            "data": {
                "create-type": self.create_type,
                "cid": self.cid,
                "parent-cid": self.parent_cid,
                "extents": [e.as_qapi() for e in self.extents],
            },
        }


@attrs.frozen
class LuksSpecific:
    """The `luks` branch of ImageInfoSpecific [block/crypto.c
    block_crypto_get_specific_info_luks]."""

    info: LuksInfo

    kind: Literal["luks"] = "luks"

    def as_qapi(self) -> JSONObject:
        return {"type": "luks", "data": self.info.as_qapi()}


FormatSpecific = Qcow2Specific | VmdkSpecific | LuksSpecific


@attrs.frozen
class PersistentBitmap:
    """A dirty bitmap stored in a qcow2 image (bitmaps header extension and bitmap
    directory) [block/qcow2-bitmap.c]. Only what the dirty-bitmap model needs:
    2.11 loads the ones with `auto` set and not `in_use` when the image opens."""

    name: str
    granularity: int
    in_use: bool
    auto: bool


@attrs.frozen
class ImageFacts:
    """What QEMU 2.11 knows about one image node after opening it.

    The first group mirrors ImageInfo member for member (`as_qapi`); the rest are
    facts the graph model needs for behaviour that is not reported in ImageInfo.
    `backing-image` is not here: the backing chain is the model's business.

    * `encrypted` is this image's own flag; `bdrv_is_encrypted` also reports true
      when the backing node is encrypted, and that is for the model to add.
    * `backing_filename` is the name as recorded in the header (`backing_file`),
      `full_backing_filename` where QEMU will open it (relative names resolved
      against the image's own file name, block.c path_combine), `None` if QEMU
      cannot work it out (then `full-backing-filename` is omitted).
    """

    filename: str
    format: str
    virtual_size: int
    actual_size: int | None = None
    dirty_flag: bool | None = None
    cluster_size: int | None = None
    encrypted: bool = False
    compressed: bool | None = None
    backing_filename: str | None = None
    full_backing_filename: str | None = None
    backing_filename_format: str | None = None
    snapshots: tuple[SnapshotInfo, ...] = ()
    format_specific: FormatSpecific | None = None

    # Not ImageInfo members.
    probed: bool = False
    supports_backing: bool = False
    blocks_migration: bool = False
    read_only_forced: bool = False
    persistent_bitmaps: tuple[PersistentBitmap, ...] = ()
    extent_files: tuple[str, ...] = ()

    def as_qapi(self) -> JSONObject:
        """The ImageInfo object `query-block` shows for this node (without
        `backing-image`) [block/qapi.c bdrv_query_image_info]."""
        out: JSONObject = {
            "filename": self.filename,
            "format": self.format,
        }
        if self.dirty_flag is not None:
            out["dirty-flag"] = self.dirty_flag
        if self.actual_size is not None:
            out["actual-size"] = self.actual_size
        out["virtual-size"] = self.virtual_size
        if self.cluster_size is not None:
            out["cluster-size"] = self.cluster_size
        if self.encrypted:
            out["encrypted"] = True
        if self.compressed is not None:
            out["compressed"] = self.compressed
        if self.backing_filename is not None:
            out["backing-filename"] = self.backing_filename
            if self.full_backing_filename is not None:
                out["full-backing-filename"] = self.full_backing_filename
            if self.backing_filename_format is not None:
                out["backing-filename-format"] = self.backing_filename_format
        if self.snapshots:
            snaps: list[JSONValue] = [s.as_qapi() for s in self.snapshots]
            out["snapshots"] = snaps
        if self.format_specific is not None:
            out["format-specific"] = self.format_specific.as_qapi()
        return out
