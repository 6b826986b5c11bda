"""AES (FIPS-197) and the sector modes LUKS images use (XTS per IEEE 1619, CBC),
in plain Python for the luks data engine: the project has no crypto dependency,
and QEMU's own crypto/ layer delegates to nettle or gcrypt. Reading a disk through
this is slow (a few hundred KiB/s); it is enough to serve the guest-visible bytes
of a LUKS image the emulator was given a secret for.

Part of the real-file edge (`blockdev.image.formats`); `luks_data` is its only user.
The tables are built once per process on first use (immutable tuples).
"""

from __future__ import annotations

import struct
from functools import cache

_WORDS = struct.Struct(">4I")


def _xtime(b: int) -> int:
    b <<= 1
    return (b ^ 0x11B) if b & 0x100 else b


def _mul(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = _xtime(a)
        b >>= 1
    return r


@cache
def _tables() -> tuple[tuple[int, ...], ...]:
    """S-box, inverse S-box and the round T-tables (Te0..3, Td0..3)."""
    sbox = [0] * 256
    p = q = 1
    while True:
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q
        for shift in (1, 2, 3, 4):
            x ^= ((q << shift) | (q >> (8 - shift))) & 0xFF
        sbox[p] = x ^ 0x63
        if p == 1:
            break
    sbox[0] = 0x63
    inv = [0] * 256
    for i, s in enumerate(sbox):
        inv[s] = i
    te0 = [(_mul(s, 2) << 24) | (s << 16) | (s << 8) | _mul(s, 3) for s in sbox]
    td0 = [(_mul(s, 14) << 24) | (_mul(s, 9) << 16) | (_mul(s, 13) << 8) | _mul(s, 11)
           for s in inv]

    def rot(t: list[int], n: int) -> tuple[int, ...]:
        return tuple(((w >> (8 * n)) | (w << (32 - 8 * n))) & 0xFFFFFFFF for w in t)

    return (tuple(sbox), tuple(inv), tuple(te0), rot(te0, 1), rot(te0, 2), rot(te0, 3),
            tuple(td0), rot(td0, 1), rot(td0, 2), rot(td0, 3))


class AES:
    """One AES key (16, 24 or 32 bytes): encrypt and decrypt 16-byte blocks."""

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("AES key must be 16, 24 or 32 bytes")
        t = _tables()
        sbox = t[0]
        nk = len(key) // 4
        self.rounds = nk + 6
        w = list(struct.unpack(f">{nk}I", key))
        rcon = 1
        for i in range(nk, 4 * (self.rounds + 1)):
            tmp = w[i - 1]
            if i % nk == 0:
                tmp = ((tmp << 8) | (tmp >> 24)) & 0xFFFFFFFF
                tmp = ((sbox[tmp >> 24] << 24) | (sbox[(tmp >> 16) & 255] << 16)
                       | (sbox[(tmp >> 8) & 255] << 8) | sbox[tmp & 255])
                tmp ^= rcon << 24
                rcon = _xtime(rcon)
            elif nk > 6 and i % nk == 4:
                tmp = ((sbox[tmp >> 24] << 24) | (sbox[(tmp >> 16) & 255] << 16)
                       | (sbox[(tmp >> 8) & 255] << 8) | sbox[tmp & 255])
            w.append(w[i - nk] ^ tmp)
        self.ek = tuple(w)
        td0, td1, td2, td3 = t[6:10]
        dk: list[int] = []
        for r in range(self.rounds, -1, -1):
            words = w[4 * r:4 * r + 4]
            if 0 < r < self.rounds:
                words = [td0[sbox[x >> 24]] ^ td1[sbox[(x >> 16) & 255]]
                         ^ td2[sbox[(x >> 8) & 255]] ^ td3[sbox[x & 255]] for x in words]
            dk.extend(words)
        self.dk = tuple(dk)

    def encrypt_block(self, block: bytes) -> bytes:
        t = _tables()
        sbox, te0, te1, te2, te3 = t[0], t[2], t[3], t[4], t[5]
        k = self.ek
        s0, s1, s2, s3 = _WORDS.unpack(block)
        s0 ^= k[0]
        s1 ^= k[1]
        s2 ^= k[2]
        s3 ^= k[3]
        for r in range(1, self.rounds):
            i = 4 * r
            s0, s1, s2, s3 = (
                te0[s0 >> 24] ^ te1[(s1 >> 16) & 255] ^ te2[(s2 >> 8) & 255] ^ te3[s3 & 255] ^ k[i],
                te0[s1 >> 24] ^ te1[(s2 >> 16) & 255] ^ te2[(s3 >> 8) & 255] ^ te3[s0 & 255]
                ^ k[i + 1],
                te0[s2 >> 24] ^ te1[(s3 >> 16) & 255] ^ te2[(s0 >> 8) & 255] ^ te3[s1 & 255]
                ^ k[i + 2],
                te0[s3 >> 24] ^ te1[(s0 >> 16) & 255] ^ te2[(s1 >> 8) & 255] ^ te3[s2 & 255]
                ^ k[i + 3])
        i = 4 * self.rounds
        return _WORDS.pack(
            ((sbox[s0 >> 24] << 24) | (sbox[(s1 >> 16) & 255] << 16)
             | (sbox[(s2 >> 8) & 255] << 8) | sbox[s3 & 255]) ^ k[i],
            ((sbox[s1 >> 24] << 24) | (sbox[(s2 >> 16) & 255] << 16)
             | (sbox[(s3 >> 8) & 255] << 8) | sbox[s0 & 255]) ^ k[i + 1],
            ((sbox[s2 >> 24] << 24) | (sbox[(s3 >> 16) & 255] << 16)
             | (sbox[(s0 >> 8) & 255] << 8) | sbox[s1 & 255]) ^ k[i + 2],
            ((sbox[s3 >> 24] << 24) | (sbox[(s0 >> 16) & 255] << 16)
             | (sbox[(s1 >> 8) & 255] << 8) | sbox[s2 & 255]) ^ k[i + 3])

    def decrypt_block(self, block: bytes) -> bytes:
        t = _tables()
        inv, td0, td1, td2, td3 = t[1], t[6], t[7], t[8], t[9]
        k = self.dk
        s0, s1, s2, s3 = _WORDS.unpack(block)
        s0 ^= k[0]
        s1 ^= k[1]
        s2 ^= k[2]
        s3 ^= k[3]
        for r in range(1, self.rounds):
            i = 4 * r
            s0, s1, s2, s3 = (
                td0[s0 >> 24] ^ td1[(s3 >> 16) & 255] ^ td2[(s2 >> 8) & 255] ^ td3[s1 & 255] ^ k[i],
                td0[s1 >> 24] ^ td1[(s0 >> 16) & 255] ^ td2[(s3 >> 8) & 255] ^ td3[s2 & 255]
                ^ k[i + 1],
                td0[s2 >> 24] ^ td1[(s1 >> 16) & 255] ^ td2[(s0 >> 8) & 255] ^ td3[s3 & 255]
                ^ k[i + 2],
                td0[s3 >> 24] ^ td1[(s2 >> 16) & 255] ^ td2[(s1 >> 8) & 255] ^ td3[s0 & 255]
                ^ k[i + 3])
        i = 4 * self.rounds
        return _WORDS.pack(
            ((inv[s0 >> 24] << 24) | (inv[(s3 >> 16) & 255] << 16)
             | (inv[(s2 >> 8) & 255] << 8) | inv[s1 & 255]) ^ k[i],
            ((inv[s1 >> 24] << 24) | (inv[(s0 >> 16) & 255] << 16)
             | (inv[(s3 >> 8) & 255] << 8) | inv[s2 & 255]) ^ k[i + 1],
            ((inv[s2 >> 24] << 24) | (inv[(s1 >> 16) & 255] << 16)
             | (inv[(s0 >> 8) & 255] << 8) | inv[s3 & 255]) ^ k[i + 2],
            ((inv[s3 >> 24] << 24) | (inv[(s2 >> 16) & 255] << 16)
             | (inv[(s1 >> 8) & 255] << 8) | inv[s0 & 255]) ^ k[i + 3])


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def xts_decrypt(data_key: AES, tweak_key: AES, iv: bytes, data: bytes) -> bytes:
    """XTS-AES decryption of one data unit (a whole number of blocks, as LUKS
    sectors are): T = E_K2(iv), then P_j = D_K1(C_j ^ T) ^ T with T multiplied by
    alpha in GF(2^128) between blocks."""
    tweak = int.from_bytes(tweak_key.encrypt_block(iv), "little")
    out = bytearray()
    for j in range(0, len(data), 16):
        t = tweak.to_bytes(16, "little")
        out += _xor(data_key.decrypt_block(_xor(data[j:j + 16], t)), t)
        tweak <<= 1
        if tweak >> 128:
            tweak = (tweak & ((1 << 128) - 1)) ^ 0x87
    return bytes(out)


def cbc_decrypt(key: AES, iv: bytes, data: bytes) -> bytes:
    out = bytearray()
    prev = iv
    for j in range(0, len(data), 16):
        block = data[j:j + 16]
        out += _xor(key.decrypt_block(block), prev)
        prev = block
    return bytes(out)
