"""The `Formatting '...'` line QEMU prints when it creates an image.

Part of the pure `blockdev.image` package: text only, no I/O. block.c
bdrv_img_create (quiet false: blockdev.c external_snapshot_prepare, the drive-mirror
and drive-backup targets; -drive snapshot=on's bdrv_append_temp_snapshot uses
bdrv_create and prints nothing) builds the format driver's create options appended
with the protocol's (qemu_opts_append: the format's first, duplicates dropped), sets
`size`, `backing_file`, `backing_fmt`, and prints `Formatting 'FILE', fmt=FMT ` then
util/qemu-option.c qemu_opts_print(opts, " "): every option in list order that is
set or has a default; a string is printed with its commas doubled (escaped_print), a
size or number that was set as its number, anything else as its text.

The lists are QEMU 2.11's `*_create_opts` (block/qcow2.c, qcow.c, qed.c, raw-format.c,
vmdk.c, vdi.c without CONFIG_VDI_BLOCK_SIZE, vhdx.c, vpc.c, parallels.c, crypto.c; the
file protocol's, block/file-posix.c, adds only options without defaults): name, type
(`size`, `number`, `string`, `bool`) and default.
"""

from __future__ import annotations

Opt = tuple[str, str, str | None]

_S, _N, _T, _B = "size", "number", "string", "bool"

_CRYPTO = ("key-secret", "cipher-alg", "cipher-mode", "ivgen-alg", "ivgen-hash-alg",
           "hash-alg", "iter-time")

CREATE_OPTS: dict[str, tuple[Opt, ...]] = {
    "qcow2": (
        ("size", _S, None), ("compat", _T, None), ("backing_file", _T, None),
        ("backing_fmt", _T, None), ("encryption", _B, None), ("encrypt.format", _T, None),
        *((f"encrypt.{n}", _N if n == "iter-time" else _T, None) for n in _CRYPTO),
        ("cluster_size", _S, "65536"), ("preallocation", _T, None),
        ("lazy_refcounts", _B, "off"), ("refcount_bits", _N, "16")),
    "qcow": (
        ("size", _S, None), ("backing_file", _T, None), ("encryption", _B, None),
        ("encrypt.format", _T, None), ("encrypt.key-secret", _T, None)),
    "qed": (
        ("size", _S, None), ("backing_file", _T, None), ("backing_fmt", _T, None),
        ("cluster_size", _S, "65536"), ("table_size", _S, None)),
    "raw": (("size", _S, None),),
    "vmdk": (
        ("size", _S, None), ("adapter_type", _T, None), ("backing_file", _T, None),
        ("compat6", _B, "off"), ("hwversion", _T, "undefined"), ("subformat", _T, None),
        ("zeroed_grain", _B, None)),
    "vdi": (("size", _S, None), ("static", _B, "off")),
    "vhdx": (
        ("size", _S, None), ("log_size", _S, "1048576"), ("block_size", _S, "0"),
        ("subformat", _T, None), ("block_state_zero", _B, None)),
    "vpc": (("size", _S, None), ("subformat", _T, None), ("force_size", _B, None)),
    "parallels": (("size", _S, None), ("cluster_size", _S, "1048576")),
    "luks": (("size", _S, None),
             *((n, _N if n == "iter-time" else _T, None) for n in _CRYPTO)),
}

# block/file-posix.c raw_create_opts, appended after the format's.
_FILE_OPTS: tuple[Opt, ...] = (("size", _S, None), ("nocow", _B, None),
                               ("preallocation", _T, None))


def _escaped(value: str) -> str:
    """util/qemu-option.c escaped_print: a comma is printed twice."""
    return value.replace(",", ",,")


def formatting_line(filename: str, fmt: str, size: int, *, backing_file: str | None,
                    backing_format: str | None) -> str | None:
    """What bdrv_img_create prints before creating the image, newline included; None
    where QEMU fails before printing (a format it cannot describe here, or a
    backing file or format the driver has no option for)."""
    fmt_opts = CREATE_OPTS.get(fmt)
    if fmt_opts is None:
        return None
    names = [o[0] for o in fmt_opts]
    merged = list(fmt_opts) + [o for o in _FILE_OPTS if o[0] not in names]
    values: dict[str, str] = {"size": str(size)}
    for name, value in (("backing_file", backing_file), ("backing_fmt", backing_format)):
        if value is None:
            continue
        if name not in names:
            return None
        values[name] = value
    out = []
    for name, kind, default in merged:
        value = values.get(name, default)
        if value is None:
            continue
        if kind == _T:
            value = _escaped(value)
        elif kind in (_S, _N) and name in values:
            value = str(int(value))
        out.append(f"{name}={value}")
    return f"Formatting '{filename}', fmt={fmt} {' '.join(out)}\n"
