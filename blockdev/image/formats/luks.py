"""LUKS (version 1) headers: the `luks` format driver of block/crypto.c and the
header parser that qcow2's LUKS encryption shares [crypto/block-luks.c].

Only the header is read here; any key secret is accepted (the caller checks that
the secret object exists). The data engine (`luks_data`) unlocks a key slot with
the secret's passphrase and refuses a wrong one with QEMU's `Invalid password,
cannot unlock any keyslot` when the node gets its engine.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from blockdev.image.formats.base import ImageError, OpenContext, c_string, read_or_fail
from blockdev.image.formats.facts import ImageFacts, LuksInfo, LuksSlot, LuksSpecific

LUKS_MAGIC = b"LUKS\xba\xbe"
LUKS_VERSION = 1
LUKS_HEADER_SIZE = 592
LUKS_SECTOR_SIZE = 512
LUKS_NUM_KEY_SLOTS = 8
LUKS_KEY_SLOT_ENABLED = 0x00AC71F3

_HEADER = struct.Struct(">6sH32s32s32sII20s32sI40s")
_SLOT = struct.Struct(">II32sII")

# qapi/crypto.json enums, with the sizes crypto/ uses for them.
HASH_DIGEST_LEN = {
    "md5": 16,
    "sha1": 20,
    "sha224": 28,
    "sha256": 32,
    "sha384": 48,
    "sha512": 64,
    "ripemd160": 20,
}
CIPHER_KEY_LEN = {
    "aes-128": 16,
    "aes-192": 24,
    "aes-256": 32,
    "des-rfb": 8,
    "3des": 24,
    "cast5-128": 16,
    "serpent-128": 16,
    "serpent-192": 24,
    "serpent-256": 32,
    "twofish-128": 16,
    "twofish-192": 24,
    "twofish-256": 32,
}
CIPHER_MODES = ("ecb", "cbc", "xts", "ctr")
IVGEN_ALGS = ("plain", "plain64", "essiv")

# crypto/block-luks.c qcrypto_block_luks_cipher_name_map
_CIPHER_NAME_MAP: dict[str, dict[int, str]] = {
    "aes": {16: "aes-128", 24: "aes-192", 32: "aes-256"},
    "cast5": {16: "cast5-128"},
    "serpent": {16: "serpent-128", 24: "serpent-192", 32: "serpent-256"},
    "twofish": {16: "twofish-128", 24: "twofish-192", 32: "twofish-256"},
}


def probe(buf: bytes, filename: str) -> int:
    """block_crypto_probe_luks / qcrypto_block_luks_has_format."""
    if len(buf) >= 40 and buf[:6] == LUKS_MAGIC and struct.unpack_from(">H", buf, 6)[0] == 1:
        return 100
    return 0


def _lookup(name: str, choices: tuple[str, ...] | dict[str, int], kind: str) -> str:
    """qcrypto_block_luks_name_lookup: QEMU's wording for an unknown enum value."""
    if name not in choices:
        raise ImageError(f"{kind} {name} not supported")
    return name


def _essiv_cipher(cipher: str, ivhash: str) -> str:
    """qcrypto_block_luks_essiv_cipher: the cipher whose key length matches the
    digest of the IV hash."""
    digest = HASH_DIGEST_LEN[ivhash]
    if CIPHER_KEY_LEN[cipher] == digest:
        return cipher
    for family, label in (("aes", "AES"), ("serpent", "Serpent"), ("twofish", "Twofish")):
        if cipher.startswith(family + "-"):
            for size in (128, 192, 256):
                candidate = f"{family}-{size}"
                if CIPHER_KEY_LEN[candidate] == digest:
                    return candidate
            raise ImageError(f"No {label} cipher with key size {digest} available")
    raise ImageError(f"Cipher {cipher} not supported with essiv")


def parse_header(
    read: Callable[[int, int], bytes], *, optprefix: str, key_secret: str | None
) -> LuksInfo:
    """qcrypto_block_luks_open without the key-slot unlocking: the same checks in the
    same order, returning what qcrypto_block_luks_get_info reports. `read(offset,
    size)` reads from the start of the LUKS header and raises ImageError itself."""
    if key_secret is None:
        raise ImageError(f"Parameter '{optprefix}key-secret' is required for cipher")
    raw = read(0, LUKS_HEADER_SIZE)
    (
        magic,
        version,
        cipher_name_b,
        cipher_mode_b,
        hash_spec_b,
        payload_offset,
        key_bytes,
        _digest,
        _salt,
        mk_iters,
        uuid_b,
    ) = _HEADER.unpack_from(raw, 0)
    if magic != LUKS_MAGIC:
        raise ImageError("Volume is not in LUKS format")
    if version != LUKS_VERSION:
        raise ImageError(f"LUKS version {version} is not supported")

    mode_spec = c_string(cipher_mode_b)
    if "-" not in mode_spec:
        raise ImageError(f"Unexpected cipher mode string format {mode_spec}")
    mode_name, ivgen_spec = mode_spec.split("-", 1)
    ivhash: str | None = None
    if ":" in ivgen_spec:
        ivgen_name, ivhash_name = ivgen_spec.split(":", 1)
        ivhash = _lookup(ivhash_name, HASH_DIGEST_LEN, "Hash algorithm")
    else:
        ivgen_name = ivgen_spec
    mode = _lookup(mode_name, CIPHER_MODES, "Cipher mode")

    cipher_name = c_string(cipher_name_b)
    size = key_bytes // 2 if mode == "xts" else key_bytes
    cipher = _CIPHER_NAME_MAP.get(cipher_name, {}).get(size)
    if cipher is None:
        raise ImageError(f"Algorithm {cipher_name} with key size {size} bytes not supported")
    hash_alg = _lookup(c_string(hash_spec_b), HASH_DIGEST_LEN, "Hash algorithm")
    ivgen = _lookup(ivgen_name, IVGEN_ALGS, "IV generator")
    if ivgen == "essiv":
        if ivhash is None:
            raise ImageError("Missing IV generator hash specification")
        _essiv_cipher(cipher, ivhash)

    slots = []
    for i in range(LUKS_NUM_KEY_SLOTS):
        active, iters, _slot_salt, key_offset, stripes = _SLOT.unpack_from(
            raw, _HEADER.size + i * _SLOT.size
        )
        on = active == LUKS_KEY_SLOT_ENABLED
        slots.append(
            LuksSlot(
                active=on,
                key_offset=key_offset * LUKS_SECTOR_SIZE,
                iters=iters if on else None,
                stripes=stripes if on else None,
            )
        )
    return LuksInfo(
        cipher_alg=cipher,
        cipher_mode=mode,
        ivgen_alg=ivgen,
        ivgen_hash_alg=ivhash if ivgen == "essiv" else None,
        hash_alg=hash_alg,
        payload_offset=payload_offset * LUKS_SECTOR_SIZE,
        master_key_iters=mk_iters,
        uuid=c_string(uuid_b[:40]),
        slots=tuple(slots),
    )


def open_image(ctx: OpenContext) -> ImageFacts:
    """block_crypto_open_luks: the LUKS header sits at offset 0 of the file; the
    disk is what follows the payload offset."""
    file = ctx.file

    def read(offset: int, size: int) -> bytes:
        return read_or_fail(file, offset, size, "Could not read encryption header")

    info = parse_header(read, optprefix="", key_secret=ctx.key_secret)
    # block_crypto_getlength: file length minus payload, rounded up to sectors by
    # refresh_total_sectors.
    # (QEMU asserts that the payload starts before the end of the file.)
    virtual = max(0, file.length - info.payload_offset)
    virtual = (virtual + 511) // 512 * 512
    return ImageFacts(
        filename=ctx.filename,
        format="luks",
        virtual_size=virtual,
        actual_size=file.allocated_size(),
        # block_crypto_get_info_luks asks the file node, which answers.
        dirty_flag=False,
        encrypted=True,
        format_specific=LuksSpecific(info=info),
        probed=ctx.probed,
    )
