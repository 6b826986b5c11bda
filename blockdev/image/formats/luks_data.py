"""The luks format's data engine: block/crypto.c over crypto/block-luks.c, reading.

Part of the real-file edge (`blockdev.image.formats`); `luks.py` checks the header
at open, this module unlocks a key slot with the passphrase the caller resolved
from the node's `key-secret` and decrypts the payload.

Unlocking is qcrypto_block_luks_find_key: for each active slot, PBKDF2 of the
passphrase with the slot's salt and iterations gives the key that decrypts the
slot's anti-forensic key material (sector by sector from sector 0, with the
payload's cipher and IV generator), AF-merge (crypto/afsplit.c) gives a candidate
master key, and its PBKDF2 digest must equal the header's. No slot matching is
QEMU's "Invalid password, cannot unlock any keyslot" (at open).

Reads: the payload starts at `payload-offset`; each 512-byte sector is decrypted
with the IV of its guest sector number (block_crypto_co_preadv ->
qcrypto_block_decrypt). Ciphers: AES-128/192/256 in XTS, CBC or ECB mode with the
plain, plain64 or essiv IV generators (aes.py); other ciphers (serpent, twofish,
cast5, des) are not implemented and refused at open. block/crypto.c has no
get_block_status in 2.11, so every range is data without an offset. Writes: see
`mapped` (QEMU writes LUKS images; the emulator does not).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from blockdev.image.formats.aes import AES, cbc_decrypt, xts_decrypt
from blockdev.image.formats.base import (
    BlockStatus,
    DataContext,
    FileView,
    FormatData,
    ImageError,
)
from blockdev.image.formats.mapped import DATA, Extent, MappedData

SECTOR = 512
_HEADER = struct.Struct(">6sH32s32s32sII20s32sI40s")
_SLOT = struct.Struct(">II32sII")
KEY_SLOT_ENABLED = 0x00AC71F3
DIGEST_LEN = 20


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace")


class SectorCipher:
    """One sector cipher: the payload's algorithm, mode and IV generator."""

    def __init__(self, mode: str, ivgen: str, ivhash: str | None, key: bytes) -> None:
        self.mode = mode
        self.ivgen = ivgen
        if mode == "xts":
            half = len(key) // 2
            self.k1, self.k2 = AES(key[:half]), AES(key[half:])
        else:
            self.k1 = AES(key)
        self.essiv: AES | None = None
        if ivgen == "essiv":
            assert ivhash is not None
            self.essiv = AES(hashlib.new(ivhash, key).digest())

    def _iv(self, sector: int) -> bytes:
        """qcrypto_ivgen_calculate: plain (32-bit) and plain64 little-endian sector
        numbers, essiv the sector number encrypted with the hashed key."""
        if self.ivgen == "plain":
            return (sector & 0xFFFFFFFF).to_bytes(16, "little")
        iv = (sector & 0xFFFFFFFFFFFFFFFF).to_bytes(16, "little")
        if self.essiv is not None:
            return self.essiv.encrypt_block(iv)
        return iv

    def decrypt(self, first_sector: int, data: bytes) -> bytes:
        """qcrypto_block_decrypt_helper: sector by sector, the IV reset each time."""
        out = bytearray()
        for i in range(0, len(data), SECTOR):
            chunk = data[i:i + SECTOR]
            iv = self._iv(first_sector + i // SECTOR)
            if self.mode == "xts":
                out += xts_decrypt(self.k1, self.k2, iv, chunk)
            elif self.mode == "cbc":
                out += cbc_decrypt(self.k1, iv, chunk)
            else:
                out += b"".join(self.k1.decrypt_block(chunk[j:j + 16])
                                for j in range(0, len(chunk), 16))
        return bytes(out)


def _af_merge(hash_name: str, blocklen: int, stripes: int, material: bytes) -> bytes:
    """qcrypto_afsplit_decode."""
    digest_len = hashlib.new(hash_name).digest_size
    block = bytes(blocklen)
    for i in range(stripes - 1):
        block = bytes(a ^ b for a, b in zip(material[i * blocklen:(i + 1) * blocklen], block,
                                            strict=True))
        parts = []
        for j in range(0, blocklen, digest_len):
            piece = block[j:j + digest_len]
            h = hashlib.new(hash_name, struct.pack(">I", j // digest_len) + piece).digest()
            parts.append(h[:len(piece)])
        block = b"".join(parts)
    last = material[(stripes - 1) * blocklen:stripes * blocklen]
    return bytes(a ^ b for a, b in zip(last, block, strict=True))


def _parse_mode(cipher_name: str, cipher_mode: str, key_bytes: int
                ) -> tuple[str, str, str | None]:
    """The header's cipher and mode strings, as qcrypto_block_luks_open reads
    them: (mode, ivgen, essiv hash)."""
    if cipher_name != "aes":
        raise ImageError(f"Cipher {cipher_name} not supported")
    mode, _, ivspec = cipher_mode.partition("-")
    if mode not in ("xts", "cbc", "ecb"):
        raise ImageError(f"Cipher mode {mode} not supported")
    ivgen, _, ivhash = ivspec.partition(":")
    if mode == "ecb":
        return mode, "plain64", None
    if ivgen not in ("plain", "plain64", "essiv"):
        raise ImageError(f"IV generator {ivgen} not supported")
    aes_key = key_bytes // 2 if mode == "xts" else key_bytes
    if aes_key not in (16, 24, 32):
        raise ImageError(f"Cipher {cipher_name} not supported")
    return mode, ivgen, (ivhash or None) if ivgen == "essiv" else None


def unlock(file: FileView, passphrase: bytes, base: int = 0) -> tuple[SectorCipher, int]:
    """qcrypto_block_luks_open with a passphrase: the payload cipher and the
    payload's byte offset. `base` is where the LUKS header starts in `file`."""
    raw = file.pread(base, _HEADER.size + 8 * _SLOT.size)
    (_magic, _version, cipher_name, cipher_mode, hash_spec, payload_offset, key_bytes,
     mk_digest, mk_salt, mk_iterations, _uuid) = _HEADER.unpack_from(raw, 0)
    name, mode_spec, hash_name = _cstr(cipher_name), _cstr(cipher_mode), _cstr(hash_spec)
    mode, ivgen, ivhash = _parse_mode(name, mode_spec, key_bytes)
    for i in range(8):
        active, iterations, salt, key_offset, stripes = _SLOT.unpack_from(
            raw, _HEADER.size + i * _SLOT.size)
        if active != KEY_SLOT_ENABLED:
            continue
        slot_key = hashlib.pbkdf2_hmac(hash_name, passphrase, salt, iterations, key_bytes)
        material = file.pread(base + key_offset * SECTOR, key_bytes * stripes)
        padded = material + bytes(-len(material) % SECTOR)
        split = SectorCipher(mode, ivgen, ivhash, slot_key).decrypt(0, padded)[:len(material)]
        master = _af_merge(hash_name, key_bytes, stripes, split)
        digest = hashlib.pbkdf2_hmac(hash_name, master, mk_salt, mk_iterations, DIGEST_LEN)
        if hmac.compare_digest(digest, mk_digest):
            return SectorCipher(mode, ivgen, ivhash, master), payload_offset * SECTOR
    raise ImageError("Invalid password, cannot unlock any keyslot")


class LuksData(MappedData):
    """A luks node's data engine (see the module docstring)."""

    offset_valid = False

    def __init__(self, ctx: DataContext) -> None:
        if ctx.passphrase is None:
            raise ImageError("Parameter 'key-secret' is required for cipher")
        self.file = ctx.file
        self.writable = ctx.writable
        self.backing = ctx.backing
        self.size = ctx.facts.virtual_size
        self.cipher, self.payload = unlock(ctx.file, ctx.passphrase)

    @property
    def length(self) -> int:
        return self.size

    def block_status(self, offset: int, length: int) -> BlockStatus:
        return BlockStatus(pnum=length, data=True)

    def _map(self, offset: int, length: int) -> Extent:
        return Extent(DATA, length, self.file, self.payload + offset)

    def _read_host(self, ext: Extent) -> bytes:
        assert ext.host is not None
        guest = ext.host - self.payload
        start = guest - guest % SECTOR
        end = -(-(guest + ext.length) // SECTOR) * SECTOR
        raw = super()._read_host(Extent(DATA, end - start, self.file, self.payload + start))
        plain = self.cipher.decrypt(start // SECTOR, raw)
        return plain[guest - start:guest - start + ext.length]


def open_data(ctx: DataContext) -> FormatData:
    return LuksData(ctx)
