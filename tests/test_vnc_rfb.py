"""The RFB state machine and DES of the VNC server, without sockets.

Pins QEMU 2.11's ui/vnc.c protocol_version (3.3/3.7/3.8; 3.4 and 3.5 as 3.3; anything
else gets security type 0), protocol_client_auth ("Authentication failed" with its
NUL, only for 3.8), protocol_client_auth_vnc (DES-RFB challenge response; no or
expired password fails), protocol_client_init (ServerInit: the console's size,
pixel_format_message, "QEMU" or "QEMU (<name>)") and protocol_client_msg (an unknown
message drops the client).
"""

from __future__ import annotations

import struct

import pytest

from devices.display import AUTH_NONE, AUTH_VNC
from devices.display.console import Console
from devices.display.des import des_encrypt_block, vnc_key, vnc_response
from devices.display.rfb import PixelFormat, RfbServer
from devices.display.vnc import BasicInfo, VncDisplays

CHALLENGE = bytes(range(16))
FAILED = struct.pack(">I", 1) + struct.pack(">I", 22) + b"Authentication failed\0"


def server(auth: int = AUTH_NONE, password: str | None = None, name: str = "QEMU") -> RfbServer:
    return RfbServer(console=Console(), auth=auth, name=name, challenge=CHALLENGE,
                     password=lambda: password)


def server_init(name: bytes = b"QEMU") -> bytes:
    """protocol_client_init's reply for the 640x480 console, QEMU's 32-bit format."""
    fmt = bytes.fromhex("2018000100ff00ff00ff100800000000")
    return struct.pack(">HH", 640, 480) + fmt + struct.pack(">I", len(name)) + name


def test_des_matches_the_fips_example() -> None:
    """The classic DES worked example (key 133457799BBCDFF1)."""
    assert des_encrypt_block(bytes.fromhex("133457799BBCDFF1"),
                             bytes.fromhex("0123456789ABCDEF")).hex() == "85e813540f0ab405"


def test_vnc_key_mirrors_each_byte_and_pads_to_eight() -> None:
    """QCRYPTO_CIPHER_ALG_DES_RFB: bits of each key byte reversed; the password is cut
    or zero-padded to 8 bytes (protocol_client_auth_vnc)."""
    assert vnc_key("\x01") == b"\x80" + bytes(7)
    assert vnc_key("abcdefghij") == vnc_key("abcdefgh")


def test_version_38_with_no_auth() -> None:
    """3.8: one security type, SecurityResult OK, then ServerInit after ClientInit."""
    rfb = server()
    assert rfb.start() == b"RFB 003.008\n"
    assert rfb.feed(b"RFB 003.008\n") == b"\x01\x01"
    assert rfb.feed(b"\x01") == struct.pack(">I", 0)
    assert not rfb.initialized
    assert rfb.feed(b"\x01") == server_init()
    assert rfb.initialized and not rfb.closed


def test_version_37_has_no_security_result_for_none() -> None:
    """protocol_client_auth: the SecurityResult of type None only from 3.8 on."""
    rfb = server()
    assert rfb.feed(b"RFB 003.007\n") == b"\x01\x01"
    assert rfb.feed(b"\x01\x00") == server_init()


@pytest.mark.parametrize("version", [b"RFB 003.003\n", b"RFB 003.004\n", b"RFB 003.005\n"])
def test_version_33_names_the_security_type(version: bytes) -> None:
    """3.3 (and 3.4/3.5, treated as 3.3): the server sends the type as a u32."""
    rfb = server()
    assert rfb.feed(version) == struct.pack(">I", AUTH_NONE)
    assert rfb.feed(b"\x01") == server_init()
    assert rfb.minor == 3


def test_unsupported_version_gets_type_zero_and_is_dropped() -> None:
    """protocol_version: major 3 with an unknown minor, or another major."""
    rfb = server()
    assert rfb.feed(b"RFB 004.000\n") == struct.pack(">I", 0)
    assert rfb.closed


def test_malformed_version_is_dropped_silently() -> None:
    """protocol_version: sscanf fails -> vnc_client_error, nothing sent."""
    rfb = server()
    assert rfb.feed(b"GET / HTTP/1.0\r\n") == b""
    assert rfb.closed


def test_vnc_auth_accepts_the_right_response() -> None:
    rfb = server(AUTH_VNC, "secret")
    assert rfb.feed(b"RFB 003.008\n") == b"\x01\x02"
    assert rfb.feed(b"\x02") == CHALLENGE
    assert rfb.feed(vnc_response("secret", CHALLENGE)) == struct.pack(">I", 0)
    assert rfb.feed(b"\x00") == server_init()


def test_vnc_auth_wrong_password_38() -> None:
    """protocol_client_auth_vnc reject: 1, then the reason (sizeof includes NUL)."""
    rfb = server(AUTH_VNC, "secret")
    rfb.feed(b"RFB 003.008\n\x02")
    assert rfb.feed(vnc_response("wrong", CHALLENGE)) == FAILED
    assert rfb.closed


def test_vnc_auth_wrong_password_33_has_no_reason() -> None:
    rfb = server(AUTH_VNC, "secret")
    assert rfb.feed(b"RFB 003.003\n") == struct.pack(">I", AUTH_VNC) + CHALLENGE
    assert rfb.feed(bytes(16)) == struct.pack(">I", 1)
    assert rfb.closed


def test_vnc_auth_without_password_fails() -> None:
    """protocol_client_auth_vnc: "password is not set" -> reject."""
    rfb = server(AUTH_VNC, None)
    rfb.feed(b"RFB 003.008\n\x02")
    assert rfb.feed(vnc_response("", CHALLENGE)) == FAILED


def test_choosing_another_security_type_is_rejected() -> None:
    """protocol_client_auth: only the advertised type is accepted."""
    rfb = server(AUTH_VNC, "x")
    rfb.feed(b"RFB 003.008\n")
    assert rfb.feed(b"\x01") == FAILED
    assert rfb.closed


def test_expired_password_fails() -> None:
    """vd->expires < time(NULL): rejected although the response is right
    (qmp_expire_password then protocol_client_auth_vnc)."""
    now = [1000.0]
    displays = VncDisplays(wall=lambda: now[0])
    display = displays.init("default", {"vnc": "none", "password": "on"})
    displays.open(display)
    displays.set_password("secret")
    displays.expire_password(1500)
    client = displays.connected(display, BasicInfo("", "", "unix"))
    challenge = displays.received(client, b"RFB 003.008\n\x02")[2:]
    now[0] = 2000.0
    assert displays.received(client, vnc_response("secret", challenge)) == FAILED


def test_desktop_name_carries_the_vm_name() -> None:
    """protocol_client_init: "QEMU (<-name>)"."""
    rfb = server(name="QEMU (guest1)")
    assert rfb.feed(b"RFB 003.008\n\x01\x01").endswith(b"\x00\x00\x00\x0dQEMU (guest1)")


def initialized(rfb: RfbServer) -> RfbServer:
    rfb.feed(b"RFB 003.008\n\x01\x01")
    return rfb


def test_first_update_covers_the_request_even_if_incremental() -> None:
    """vnc_connect marks the screen dirty: the first incremental request is answered
    in full, later ones only when something changed (nothing does here)."""
    rfb = initialized(server())
    request = struct.pack(">BBHHHH", 3, 1, 0, 0, 640, 480)
    reply = rfb.feed(request)
    assert reply[:4] == b"\x00\x00\x00\x01"
    assert struct.unpack(">HHHHi", reply[4:16]) == (0, 0, 640, 480, 0)
    assert len(reply) == 16 + 640 * 480 * 4
    assert rfb.feed(request) == b""
    assert len(rfb.feed(struct.pack(">BBHHHH", 3, 0, 10, 10, 4, 2))) == 16 + 4 * 2 * 4


def test_set_pixel_format_changes_the_update_size() -> None:
    """set_pixel_format: 16 bits per pixel, then raw pixels of 2 bytes."""
    rfb = initialized(server())
    fmt = PixelFormat(bpp=16, depth=16, red_max=31, green_max=63, blue_max=31,
                      red_shift=11, green_shift=5, blue_shift=0)
    assert rfb.feed(b"\x00\x00\x00\x00" + fmt.pack()) == b""
    assert rfb.pixel_format == fmt
    reply = rfb.feed(struct.pack(">BBHHHH", 3, 0, 0, 0, 8, 8))
    assert len(reply) == 16 + 8 * 8 * 2


def test_pixel_format_encodes_colours() -> None:
    assert PixelFormat().encode(b"\x01\x02\x03") == b"\x03\x02\x01\x00"
    fmt = PixelFormat(bpp=16, depth=16, red_max=31, green_max=63, blue_max=31,
                      red_shift=11, green_shift=5, blue_shift=0, big_endian=True)
    assert fmt.encode(b"\xff\xff\xff") == b"\xff\xff"


def test_client_messages_are_parsed_in_pieces() -> None:
    """SetEncodings, key, pointer and cut text, split across reads, are consumed
    and feed the input layer."""
    seen: list[str] = []
    rfb = initialized(server())
    rfb.on_input = seen.append
    data = (struct.pack(">BxHii", 2, 2, 0, -223) + struct.pack(">BBxxI", 4, 1, 0x61)
            + struct.pack(">BBHH", 5, 1, 10, 10) + struct.pack(">BxxxI", 6, 3) + b"abc")
    for i in range(len(data)):
        assert rfb.feed(data[i:i + 1]) == b""
    assert seen == ["key", "btn", "pointer"]
    assert not rfb.closed


def test_unknown_message_drops_the_client() -> None:
    """protocol_client_msg: default -> "Msg: %d" and vnc_client_error."""
    rfb = initialized(server())
    assert rfb.feed(b"\x63garbage") == b""
    assert rfb.closed
