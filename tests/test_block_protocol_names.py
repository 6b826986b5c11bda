"""Protocol-prefixed file names (issue 14 item 2): each works in `-drive file=`, in
blockdev-change-medium/change, and as a backing file name.

block.c bdrv_find_protocol picks the driver by the `PROTOCOL:` prefix and the
driver's bdrv_parse_filename turns the rest into options (block/null.c
null_file_open's `null-co://`, block/nbd.c nbd_parse_filename, block/blkdebug.c
blkdebug_parse_filename); `json:` is bdrv_fill_options' parse_json_filename.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blockdev import drive as block_drive
from tests.test_block_support import Block, make_image

NAMES = ["null-co://", "null-aio://", 'json:{"driver": "null-co"}', "blkdebug::null-co://"]


def _drive(b: Block, filename: str, *extra: tuple[str, str]) -> None:
    block_drive.add_drive(b.layer, [("file", filename), ("if", "none"), ("id", "d0"),
                                    *extra])


@pytest.mark.parametrize(("filename", "shown"), [
    ("null-co://", "null-co://"),
    ("null-aio://", "null-aio://"),
    # bdrv_refresh_filename: the node's own name, not the json: text it came from.
    ('json:{"driver": "null-co"}', "null-co://"),
    # blkdebug_refresh_filename (2.11): "blkdebug:%s:%s" of the config (none) and the
    # image's exact file name.
    ("blkdebug::null-co://", "blkdebug::null-co://"),
])
def test_drive_file(filename: str, shown: str) -> None:
    b = Block()
    _drive(b, filename)
    assert b.block("d0")["inserted"]["image"]["filename"] == shown


@pytest.mark.parametrize("filename", NAMES)
def test_change_medium_and_change(filename: str) -> None:
    """qmp_blockdev_change_medium opens the name with bdrv_open(filename, NULL, ...);
    qmp_change passes it on."""
    b = Block()
    b.drive("driver=null-co,if=none,id=cd0,media=cdrom")
    b.device("ide-cd", drive="cd0", id="ide0")
    b.qmp("blockdev-change-medium", device="cd0", filename=filename)
    assert "inserted" in b.block("cd0")
    b.qmp("change", device="cd0", target=filename)
    assert "inserted" in b.block("cd0")


@pytest.mark.parametrize("backing", ["null-co://", "blkdebug::null-co://"])
def test_backing_file_name(backing: str, tmp_path: Path) -> None:
    """bdrv_open_backing_file opens the header's backing file name with bdrv_open,
    so a protocol name is parsed as on the command line."""
    top = make_image(tmp_path / "top.qcow2", "qcow2", "1M", "-u", "-b", backing, "-F", "raw")
    b = Block()
    _drive(b, str(top))
    inserted = b.block("d0")["inserted"]
    assert inserted["backing_file"] == backing
    assert inserted["image"]["backing-image"]["filename"] == backing


def test_blkdebug_config_file_name(tmp_path: Path) -> None:
    """blkdebug_parse_filename: `blkdebug:CONFIG:IMAGE`; the node is named the same way
    back (blkdebug_refresh_filename with only `config` and `x-image`), and the raw
    node above takes its name (bdrv_refresh_filename)."""
    conf = tmp_path / "bd.conf"
    conf.write_text('[inject-error]\nevent = "read_aio"\nerrno = "5"\n')
    image = make_image(tmp_path / "base.raw", "raw", "1M")
    b = Block()
    _drive(b, f"blkdebug:{conf}:{image}", ("format", "raw"))
    assert b.block("d0")["inserted"]["image"]["filename"] == f"blkdebug:{conf}:{image}"


@pytest.mark.parametrize(("filename", "message"), [
    ("nbd:127.0.0.1:1", "Failed to connect socket: Connection refused"),
    ("nbd:127.0.0.1:1:exportname=x", "Failed to connect socket: Connection refused"),
])
def test_nbd_names_reach_the_connect(filename: str, message: str) -> None:
    """nbd_parse_filename turns `nbd:HOST:PORT[:exportname=NAME]` into server options;
    the connect's error is util/qemu-sockets.c inet_connect_saddr's (nothing listens
    on port 1)."""
    b = Block()
    with pytest.raises(Exception, match=message):
        _drive(b, filename)


@pytest.mark.parametrize(("filename", "message"), [
    ("nbd:localhost", "error parsing address 'localhost'"),   # no default port here
    ("nbd:[::1", r"error parsing IPv6 address '\[::1'"),
    ("nbd:", "NBD server address missing"),
    ("nbd:h:1:exportname=", "NBD server address missing"),  # nothing is parsed
])
def test_nbd_name_address_errors(filename: str, message: str) -> None:
    """nbd_parse_filename: the export name is cut off first (an empty one: no options
    at all), then an inet address is util/qemu-sockets.c inet_parse's, with its
    messages; without a server nbd_config says the address is missing."""
    b = Block()
    with pytest.raises(Exception, match=message):
        _drive(b, filename)


def test_nbd_unix_name_reaches_the_connect(tmp_path: Path) -> None:
    """nbd_parse_uri: `nbd+unix:///NAME?socket=PATH`; unix_connect_saddr's error."""
    sock = tmp_path / "none.sock"
    b = Block()
    with pytest.raises(Exception, match=f"Failed to connect socket {sock}: "
                                        "No such file or directory"):
        _drive(b, f"nbd+unix:///x?socket={sock}")
