"""The luks data engine (blockdev/image/formats/luks_data.py) against images made
by the real `qemu-img create -f luks` and written by the real `qemu-io`: the key
slot unlocks with the passphrase (crypto/block-luks.c
qcrypto_block_luks_find_key), a wrong one is QEMU's "Invalid password, cannot
unlock any keyslot", and the decrypted payload equals `qemu-img convert -O raw`.
The AES core is checked against the FIPS-197 vectors."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from blockdev.image.formats import registry
from blockdev.image.formats.aes import AES
from blockdev.image.formats.base import (
    BlockIOError,
    DataContext,
    FileNode,
    FormatData,
    ImageError,
    OpenContext,
)

SECRET = "s3cr3t"
OBJ = f"secret,id=sec0,data={SECRET}"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def create_encrypted(fmt: str, opts: str, img: str) -> None:
    """qemu-img create with a LUKS key slot. qemu-img times PBKDF2 on the thread's
    CPU clock first and often fails with "Unable to get accurate CPU usage" when a
    round measures 0 ms; that failure is immediate, and another try succeeds."""
    for _ in range(40):
        result = run("qemu-img", "create", "-q", "--object", OBJ, "-f", fmt, "-o", opts,
                     img, "1M")
        if "Unable to get accurate CPU usage" not in result.stderr:
            break
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def default_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One image in qemu-img's default cipher for the module (LUKS creation is
    slow: QEMU measures PBKDF2 speed first)."""
    return make(tmp_path_factory.mktemp("luks"))


def make(tmp: Path, *opts: str) -> str:
    img = str(tmp / "img.luks")
    o = ",".join(("key-secret=sec0", "iter-time=10", *opts))
    create_encrypted("luks", o, img)
    spec = f"driver=luks,key-secret=sec0,file.filename={img}"
    cmds = ["-c", "write -P 0x5a 0 4k", "-c", "write -P 0xa5 5000 70000",
            "-c", "write -P 0x11 1040384 8192"]
    result = run("qemu-io", "--object", OBJ, "--image-opts", *cmds, spec)
    assert result.returncode == 0, result.stderr
    return img


def expected(img: str, tmp: Path) -> bytes:
    out = tmp / "out.raw"
    spec = f"driver=luks,key-secret=sec0,file.filename={img}"
    result = run("qemu-img", "convert", "--object", OBJ, "--image-opts", spec, "-O", "raw",
                 str(out))
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def engine(img: str, passphrase: bytes, files: list[FileNode]) -> FormatData:
    node = FileNode.open(img, writable=False)
    files.append(node)
    driver = registry.BY_NAME["luks"]
    assert driver.open is not None and driver.open_data is not None
    facts = driver.open(OpenContext(file=node, filename=img, read_only=True,
                                    key_secret="sec0"))
    return driver.open_data(DataContext(file=node, facts=facts, writable=False,
                                        passphrase=passphrase))


def test_aes_fips197_vectors() -> None:
    """FIPS-197 appendix C: AES-128, -192 and -256 of 00112233...eeff."""
    plain = bytes.fromhex("00112233445566778899aabbccddeeff")
    for keylen, cipher in ((16, "69c4e0d86a7b0430d8cdb78070b4c55a"),
                           (24, "dda97ca4864cdfe06eaf70a0ec0d7191"),
                           (32, "8ea2b7ca516745bfeafc49904b496089")):
        aes = AES(bytes(range(keylen)))
        assert aes.encrypt_block(plain).hex() == cipher
        assert aes.decrypt_block(bytes.fromhex(cipher)) == plain


@pytest.mark.parametrize("opts", (
    (),
    ("cipher-mode=cbc", "ivgen-alg=plain64", "hash-alg=sha1"),
))
def test_luks_reads_match_qemu(tmp_path: Path, default_image: str,
                               opts: tuple[str, ...]) -> None:
    """qemu-img's default (aes-256, xts, plain64, sha256) and cbc with sha1.
    (Each LUKS creation costs qemu-img a second of PBKDF2 timing, so essiv is
    left to the unit level.)"""
    img = make(tmp_path, *opts) if opts else default_image
    files: list[FileNode] = []
    try:
        eng = engine(img, SECRET.encode(), files)
        want = expected(img, tmp_path)
        assert eng.length == len(want)
        for off, ln in ((0, 4096), (4000, 80000), (1040000, 8576), (511, 3)):
            assert eng.read(off, ln) == want[off:off + ln]
        status = eng.block_status(0, 65536)
        assert status.data and status.offset is None
    finally:
        for f in files:
            f.close()


def test_wrong_passphrase(default_image: str) -> None:
    """qcrypto_block_luks_find_key finds no slot: QEMU's open error."""
    img = default_image
    files: list[FileNode] = []
    try:
        with pytest.raises(ImageError, match=r"^Invalid password, cannot unlock any keyslot$"):
            engine(img, b"wrong", files)
    finally:
        for f in files:
            f.close()


def test_qcow2_with_luks_encryption(tmp_path: Path) -> None:
    """qcow2 `encrypt.format=luks`: the LUKS header lives in the crypto header
    extension, and sectors are numbered by their host offset
    (qcow2_co_preadv with crypt_physical_offset); writes answer ENOTSUP."""
    img = str(tmp_path / "enc.qcow2")
    opts = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
    create_encrypted("qcow2", opts, img)
    spec = f"driver=qcow2,encrypt.key-secret=sec0,file.filename={img}"
    result = run("qemu-io", "--object", OBJ, "--image-opts", "-c", "write -P 0x5a 4096 70000",
                 spec)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out.raw"
    result = run("qemu-img", "convert", "--object", OBJ, "--image-opts", spec, "-O", "raw",
                 str(out))
    assert result.returncode == 0, result.stderr
    want = out.read_bytes()
    node = FileNode.open(img, writable=True)
    try:
        driver = registry.BY_NAME["qcow2"]
        assert driver.open is not None and driver.open_data is not None
        facts = driver.open(OpenContext(file=node, filename=img, read_only=False,
                                        key_secret="sec0", system_emulator=False))
        eng = driver.open_data(DataContext(file=node, facts=facts, writable=True,
                                           passphrase=SECRET.encode()))
        for off, ln in ((0, 8192), (4000, 72000), (70000, 5000), (1000, 1)):
            assert eng.read(off, ln) == want[off:off + ln]
        with pytest.raises(BlockIOError) as exc:
            eng.write(0, b"x")
        assert exc.value.errno == errno.ENOTSUP
        eng.close()
    finally:
        node.close()


def test_essiv_iv_is_the_sector_encrypted_with_the_hashed_key() -> None:
    """crypto/ivgen-essiv.c: the IV of sector n is E_{H(key)}(le64(n)), with the
    cipher whose key size is the hash's digest size (sha256 -> AES-256)."""
    import hashlib

    from blockdev.image.formats.luks_data import SectorCipher

    key = bytes(range(32))
    cipher = SectorCipher("cbc", "essiv", "sha256", key)
    salt_key = AES(hashlib.sha256(key).digest())
    assert cipher._iv(7) == salt_key.encrypt_block((7).to_bytes(16, "little"))
    assert SectorCipher("xts", "plain", None, key + key)._iv((1 << 32) + 5) == \
        (5).to_bytes(16, "little")
