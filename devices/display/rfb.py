"""The server side of the RFB protocol (VNC), as a sans-I/O state machine.

Pure part of the `devices.display` package [ui/vnc.c protocol_version,
protocol_client_auth, protocol_client_auth_vnc, protocol_client_init,
protocol_client_msg; RFC 6143]. `RfbServer.feed(data)` takes what the client sent
and returns what to send back; `initialized` turns true after ClientInit (VNC_INITIALIZED),
`closed` when the server drops the client (a bad version, a failed authentication, a
message it does not know: vnc_client_error). Input the client sends is handed to
`on_input` by kind (`key`, `btn`, `pointer` motion). The edge
(`devices.display.vnc_edge`) moves the bytes; the display model
(`devices.display.vnc`) decides the security type, the password and its expiry.

Versions: the server offers 3.8; a client answering 3.3, 3.7 or 3.8 is served in
its version (3.4 and 3.5 count as 3.3, as the RFB spec asks); anything else gets
security type 0 and is dropped. Framebuffer updates use the raw encoding, in the
client's pixel format (true colour, 8, 16 or 32 bits per pixel).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Literal

import attrs

from devices.display import AUTH_INVALID, AUTH_NONE, AUTH_VNC
from devices.display.console import Console
from devices.display.des import vnc_response
from schema.jsontypes import qemu_bytes

SERVER_VERSION = b"RFB 003.008\n"
# ui/vnc.c: the text of every failed authentication (sizeof includes the NUL).
AUTH_FAILED = b"Authentication failed\0"
CHALLENGE_SIZE = 16
_VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")

# Client message types (RFC 6143 §7.5) and their fixed lengths.
MSG_SET_PIXEL_FORMAT = 0
MSG_SET_ENCODINGS = 2
MSG_FRAMEBUFFER_UPDATE_REQUEST = 3
MSG_KEY_EVENT = 4
MSG_POINTER_EVENT = 5
MSG_CLIENT_CUT_TEXT = 6
MSG_QEMU = 255


@attrs.frozen
class PixelFormat:
    """RFC 6143 §7.4 PIXEL_FORMAT."""

    bpp: int = 32
    depth: int = 24
    big_endian: bool = False
    true_colour: bool = True
    red_max: int = 255
    green_max: int = 255
    blue_max: int = 255
    red_shift: int = 16
    green_shift: int = 8
    blue_shift: int = 0

    def pack(self) -> bytes:
        return struct.pack(">BBBBHHHBBBxxx", self.bpp, self.depth, self.big_endian,
                           self.true_colour, self.red_max, self.green_max, self.blue_max,
                           self.red_shift, self.green_shift, self.blue_shift)

    @classmethod
    def unpack(cls, data: bytes) -> PixelFormat:
        (bpp, depth, big, true_colour, rmax, gmax, bmax, rs, gs,
         bs) = struct.unpack(">BBBBHHHBBBxxx", data)
        return cls(bpp=bpp, depth=depth, big_endian=bool(big), true_colour=bool(true_colour),
                   red_max=rmax, green_max=gmax, blue_max=bmax, red_shift=rs,
                   green_shift=gs, blue_shift=bs)

    def encode(self, rgb: bytes) -> bytes:
        """RGB triplets as pixels of this format."""
        if (self.bpp == 32 and not self.big_endian and (self.red_max, self.green_max,
                                                        self.blue_max) == (255, 255, 255)
                and (self.red_shift, self.green_shift, self.blue_shift) == (16, 8, 0)):
            out = bytearray(len(rgb) // 3 * 4)  # QEMU's own format: B, G, R, 0
            out[0::4] = rgb[2::3]
            out[1::4] = rgb[1::3]
            out[2::4] = rgb[0::3]
            return bytes(out)
        size = self.bpp // 8
        order: Literal["big", "little"] = "big" if self.big_endian else "little"
        pixels = bytearray()
        for i in range(0, len(rgb), 3):
            r, g, b = rgb[i], rgb[i + 1], rgb[i + 2]
            value = ((r * self.red_max // 255) << self.red_shift
                     | (g * self.green_max // 255) << self.green_shift
                     | (b * self.blue_max // 255) << self.blue_shift)
            pixels += value.to_bytes(size, order)
        return bytes(pixels)


class RfbError(Exception):
    """The client broke the protocol: the server drops it (vnc_client_error)."""


@attrs.define(kw_only=True)
class RfbServer:
    """One client connection of a VNC display."""

    console: Console
    auth: int  # AUTH_NONE or AUTH_VNC (add_client's skipauth gives AUTH_NONE)
    name: str  # the desktop name of ServerInit: "QEMU" or "QEMU (<-name>)"
    challenge: bytes  # 16 random bytes, drawn by the owner
    # () -> the password, or None when it is unset or expired (checked at the response)
    password: Callable[[], str | None]
    on_input: Callable[[str], object] = lambda kind: None
    minor: int = 0
    initialized: bool = False
    closed: bool = False
    pixel_format: PixelFormat = attrs.Factory(PixelFormat)
    _buffer: bytearray = attrs.Factory(bytearray)
    _out: bytearray = attrs.Factory(bytearray)
    _state: str = "version"
    _buttons: int = 0
    _dirty: bool = True  # vnc_connect: a new client's first update covers the screen

    def start(self) -> bytes:
        """vnc_start_protocol: the server speaks first, with its version."""
        return SERVER_VERSION

    def feed(self, data: bytes) -> bytes:
        """Take the client's bytes; return the server's answer (maybe empty)."""
        if self.closed:
            return b""
        self._buffer += data
        try:
            while not self.closed and self._step():
                pass
        except RfbError:
            self.closed = True
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- the states -------------------------------------------------------------------

    def _take(self, n: int) -> bytes | None:
        if len(self._buffer) < n:
            return None
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _step(self) -> bool:
        """Handle one complete unit of input; False when more bytes are needed."""
        step = getattr(self, "_on_" + self._state)
        return bool(step())

    def _fail(self) -> None:
        self.closed = True

    def _on_version(self) -> bool:
        data = self._take(12)
        if data is None:
            return False
        match = _VERSION.fullmatch(data)
        if match is None:
            raise RfbError("malformed protocol version")
        major, minor = int(match[1]), int(match[2])
        if major != 3 or minor not in (3, 4, 5, 7, 8):
            self._out += struct.pack(">I", AUTH_INVALID)
            self._fail()
            return False
        self.minor = 3 if minor in (4, 5) else minor
        if self.minor == 3:
            # 3.3: the server names the one security type as a u32.
            self._out += struct.pack(">I", self.auth)
            self._begin_auth()
        else:
            self._out += bytes((1, self.auth))
            self._state = "security_choice"
        return True

    def _begin_auth(self) -> None:
        if self.auth == AUTH_VNC:
            self._out += self.challenge
            self._state = "vnc_response"
        else:
            self._state = "client_init"

    def _on_security_choice(self) -> bool:
        data = self._take(1)
        if data is None:
            return False
        if data[0] != self.auth:
            self._reject()
            return False
        if self.auth == AUTH_NONE:
            if self.minor >= 8:
                self._out += struct.pack(">I", 0)  # SecurityResult OK
            self._state = "client_init"
        else:
            self._begin_auth()
        return True

    def _reject(self) -> None:
        self._out += struct.pack(">I", 1)
        if self.minor >= 8:
            self._out += struct.pack(">I", len(AUTH_FAILED)) + AUTH_FAILED
        self._fail()

    def _on_vnc_response(self) -> bool:
        data = self._take(CHALLENGE_SIZE)
        if data is None:
            return False
        password = self.password()
        if password is None or vnc_response(password, self.challenge) != data:
            self._reject()
            return False
        self._out += struct.pack(">I", 0)
        self._state = "client_init"
        return True

    def _on_client_init(self) -> bool:
        if self._take(1) is None:  # the shared flag: QEMU's default policy shares
            return False
        name = qemu_bytes(self.name)
        self._out += struct.pack(">HH", self.console.width, self.console.height)
        self._out += self.pixel_format.pack()
        self._out += struct.pack(">I", len(name)) + name
        self.initialized = True
        self._state = "message"
        return True

    def _on_message(self) -> bool:
        if not self._buffer:
            return False
        kind = self._buffer[0]
        if kind == MSG_SET_PIXEL_FORMAT:
            data = self._take(20)
            if data is None:
                return False
            fmt = PixelFormat.unpack(data[4:])
            if fmt.bpp not in (8, 16, 32) or not fmt.true_colour:
                raise RfbError("unsupported pixel format")  # set_pixel_format: vnc_client_error
            self.pixel_format = fmt
        elif kind == MSG_SET_ENCODINGS:
            if len(self._buffer) < 4:
                return False
            (count,) = struct.unpack(">H", self._buffer[2:4])
            if self._take(4 + 4 * count) is None:
                return False
        elif kind == MSG_FRAMEBUFFER_UPDATE_REQUEST:
            data = self._take(10)
            if data is None:
                return False
            incremental, x, y, w, h = struct.unpack(">BHHHH", data[1:])
            if not incremental or self._dirty:
                self._dirty = False
                self._update(x, y, w, h)
        elif kind == MSG_KEY_EVENT:
            if self._take(8) is None:
                return False
            self.on_input("key")
        elif kind == MSG_POINTER_EVENT:
            data = self._take(6)
            if data is None:
                return False
            if data[1] != self._buttons:
                self._buttons = data[1]
                self.on_input("btn")
            self.on_input("pointer")
        elif kind == MSG_CLIENT_CUT_TEXT:
            if len(self._buffer) < 8:
                return False
            (length,) = struct.unpack(">I", self._buffer[4:8])
            if length > 1 << 20:
                raise RfbError("cut text too long")
            if self._take(8 + length) is None:
                return False
        elif kind == MSG_QEMU:
            return self._qemu_message()
        else:
            raise RfbError(f"Msg: {kind}")  # protocol_client_msg's default case
        return True

    def _qemu_message(self) -> bool:
        """QEMU's extension messages: the extended key event (12 bytes) and audio
        control (4 bytes; format setting 10); any other is an error."""
        if len(self._buffer) < 2:
            return False
        sub = self._buffer[1]
        if sub == 0:
            if self._take(12) is None:
                return False
            self.on_input("key")
            return True
        if sub == 1:
            if len(self._buffer) < 4:
                return False
            (op,) = struct.unpack(">H", self._buffer[2:4])
            if self._take(10 if op == 2 else 4) is None:
                return False
            return True
        raise RfbError(f"Msg: 255 {sub}")

    def _update(self, x: int, y: int, w: int, h: int) -> None:
        """A FramebufferUpdate of the requested rectangle, clipped to the console,
        in the raw encoding."""
        width, height = self.console.width, self.console.height
        x, y = min(x, width), min(y, height)
        w, h = min(w, width - x), min(h, height - y)
        self._out += struct.pack(">BxH", 0, 1)
        self._out += struct.pack(">HHHHi", x, y, w, h, 0)
        self._out += self.pixel_format.encode(self.console.rgb_rect(x, y, w, h))
