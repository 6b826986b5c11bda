"""The graphic console a board's display adapter shows: its size and its picture.

Pure model of the `devices.display` package [ui/console.c]. With no guest code to draw
anything, the first console shows what QEMU shows before the guest sets a video mode:
a 640x480 surface (ui/console.c qemu_create_message_surface, the size a VGA console
has until the guest programs the adapter) filled with black. `screendump`
(`devices.dump.ppm`) writes it and the VNC server (`devices.display.rfb`) sends it,
so both show the same pixels. A board without a display adapter (`-machine none`,
`-vga none`) has no console.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Console:
    """ui/console.c QemuConsole with its DisplaySurface: `width` x `height` pixels."""

    width: int = 640
    height: int = 480

    def rgb(self) -> bytes:
        """The surface as 8-bit R, G, B triplets, rows top to bottom."""
        return bytes(self.width * self.height * 3)

    def rgb_rect(self, x: int, y: int, w: int, h: int) -> bytes:
        """The triplets of one rectangle of the surface, rows top to bottom."""
        rows = self.rgb()
        stride = self.width * 3
        return b"".join(rows[(y + r) * stride + x * 3:(y + r) * stride + (x + w) * 3]
                        for r in range(h))
