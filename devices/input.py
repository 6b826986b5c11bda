"""The machine's input handlers: keyboards, mice and tablets as the input layer sees them.

Pure model of the `devices` layer [ui/input.c, ui/input-legacy.c]. QEMU keeps one list
of input handlers; a device registers its handler when it is realized (ids count up
from 1 in registration order, never reused), a newly *activated* handler moves to the
head, and an event goes to the first handler whose mask takes its kind. The board's
devices register here when the machine is built (`register_board`); devices added
later (`device_add usb-tablet`, owned by `devices.qdev`) call `register` / `unregister`
/ `activate`. The monitor commands (`query-mice`, `send-key`, `input-send-event`, in
`devices.display.commands`), the VNC clients and HMP's `mouse_move`/`mouse_button` read
and feed this list; what a handler received is
kept as a count per handler (`events`) and the last pointer state, because without
guest code nothing else can observe it.
"""

from __future__ import annotations

from typing import Any

import attrs

# include/ui/input.h INPUT_EVENT_MASK_*: one bit per InputEventKind.
KIND_BITS = {"key": 1 << 0, "btn": 1 << 1, "rel": 1 << 2, "abs": 1 << 3}
MASK_KEY = KIND_BITS["key"]
MASK_BTN = KIND_BITS["btn"]
MASK_REL = KIND_BITS["rel"]
MASK_ABS = KIND_BITS["abs"]

# hw/input/ps2.c: the i8042's two PS/2 handlers, in the order ps2_kbd_init and
# ps2_mouse_init register them.
PS2_KEYBOARD = ("QEMU PS/2 Keyboard", MASK_KEY)
PS2_MOUSE = ("QEMU PS/2 Mouse", MASK_BTN | MASK_REL)
# hw/usb/dev-hid.c + hw/input/hid.c, for the devices qdev adds.
USB_TABLET = ("QEMU HID Tablet", MASK_BTN | MASK_ABS)
USB_MOUSE = ("QEMU HID Mouse", MASK_BTN | MASK_REL)
USB_KEYBOARD = ("QEMU HID Keyboard", MASK_KEY)

@attrs.define(kw_only=True)
class InputHandler:
    """ui/input.c QemuInputHandlerState."""

    id: int
    name: str
    mask: int
    events: int = 0  # events delivered to it


@attrs.define(kw_only=True)
class Input:
    """The handler list of one machine (ui/input.c `handlers`)."""

    handlers: list[InputHandler] = attrs.Factory(list)
    next_id: int = 1
    buttons: int = 0  # the legacy mouse button state (monitor.c mouse_button_state)

    def register(self, name: str, mask: int) -> InputHandler:
        """qemu_input_handler_register: appended at the tail, with the next id."""
        handler = InputHandler(id=self.next_id, name=name, mask=mask)
        self.next_id += 1
        self.handlers.append(handler)
        return handler

    def unregister(self, handler: InputHandler) -> None:
        """qemu_input_handler_unregister (the device was unplugged)."""
        if handler in self.handlers:
            self.handlers.remove(handler)

    def activate(self, handler: InputHandler) -> None:
        """qemu_input_handler_activate: the handler moves to the head of the list."""
        self.handlers.remove(handler)
        self.handlers.insert(0, handler)

    def register_board(self, has_i8042: bool) -> None:
        """The board's PS/2 keyboard and mouse (hw/input/pckbd.c i8042 on pc and q35)."""
        if has_i8042:
            for name, mask in (PS2_KEYBOARD, PS2_MOUSE):
                self.register(name, mask)

    def find(self, mask: int) -> InputHandler | None:
        """qemu_input_find_handler without a console: the first handler taking `mask`."""
        return next((h for h in self.handlers if h.mask & mask), None)

    def mice(self) -> list[dict[str, Any]]:
        """qmp_query_mice: the pointer handlers, the first one `current`, listed in
        the reverse of the handler order (QEMU prepends as it walks)."""
        out: list[dict[str, Any]] = []
        current = True
        for h in self.handlers:
            if not h.mask & (MASK_REL | MASK_ABS):
                continue
            out.insert(0, {"name": h.name, "index": h.id, "current": current,
                           "absolute": bool(h.mask & MASK_ABS)})
            current = False
        return out

    def deliver(self, kind: str) -> bool:
        """qemu_input_event_send: to the first handler of the kind (`pointer`: the
        current mouse, relative or absolute, as the VNC server's pointer events go);
        False without one."""
        handler = self.find(MASK_REL | MASK_ABS if kind == "pointer" else KIND_BITS[kind])
        if handler is None:
            return False
        handler.events += 1
        return True
