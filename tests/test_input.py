"""query-mice, send-key, input-send-event and HMP's mouse and key commands.

Pins QEMU 2.11's ui/input.c (qemu_input_handler_register: ids from 1, appended;
qemu_input_handler_activate: to the head; qmp_query_mice: pointer handlers, the
first current, listed reversed; qmp_input_send_event: the console, the run state,
a handler for every event, in that order), ui/input-legacy.c qmp_send_key, hmp.c
hmp_info_mice and hmp_sendkey, monitor.c hmp_mouse_move / hmp_mouse_button, and
hw/input/ps2.c (the i8042's "QEMU PS/2 Keyboard" and "QEMU PS/2 Mouse").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from devices.input import MASK_ABS, MASK_BTN, MASK_KEY, USB_TABLET, Input
from tests.conftest import VmHarness


def run(tvm: VmHarness, name: str, arguments: dict[str, Any] | None = None) -> Any:
    return tvm.talk().execute(name, arguments)


def hmp(tvm: VmHarness, line: str) -> str:
    return run(tvm, "human-monitor-command", {"command-line": line})["return"]


KEY_DOWN = {"type": "key", "data": {"down": True, "key": {"type": "qcode", "data": "a"}}}
ABS_X = {"type": "abs", "data": {"axis": "x", "value": 100}}


def test_pc_has_the_ps2_mouse(vm_cmdline: Callable[..., VmHarness]) -> None:
    """The i8042 registers the keyboard (id 1), then the mouse (id 2)."""
    tvm = vm_cmdline("-S")
    assert run(tvm, "query-mice") == {"return": [
        {"name": "QEMU PS/2 Mouse", "index": 2, "current": True, "absolute": False}]}
    assert hmp(tvm, "info mice") == "* Mouse #2: QEMU PS/2 Mouse\r\n"


def test_machine_none_has_no_mouse(vm_cmdline: Callable[..., VmHarness]) -> None:
    tvm = vm_cmdline("-S", "-M", "none")
    assert run(tvm, "query-mice") == {"return": []}
    assert hmp(tvm, "info mice") == "No mouse devices connected\r\n"


def test_an_activated_tablet_becomes_current() -> None:
    """A device added later (qdev calls `register`): appended, so the PS/2 mouse
    stays current until the tablet is activated (moved to the head); the list is
    reversed handler order."""
    inp = Input()
    inp.register_board(True)
    tablet = inp.register(*USB_TABLET)
    assert inp.mice() == [
        {"name": "QEMU HID Tablet", "index": 3, "current": False, "absolute": True},
        {"name": "QEMU PS/2 Mouse", "index": 2, "current": True, "absolute": False}]
    inp.activate(tablet)
    assert inp.mice() == [
        {"name": "QEMU PS/2 Mouse", "index": 2, "current": False, "absolute": False},
        {"name": "QEMU HID Tablet", "index": 3, "current": True, "absolute": True}]
    inp.unregister(tablet)
    assert [m["index"] for m in inp.mice()] == [2]
    assert inp.register("QEMU HID Keyboard", MASK_KEY).id == 4  # ids are never reused
    assert inp.find(MASK_BTN | MASK_ABS) is not None


def test_send_key_reaches_the_keyboard(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qmp_send_key: every key down, then up; hold-time only spaces them."""
    tvm = vm_cmdline("-S")
    keys = [{"type": "qcode", "data": "ctrl"}, {"type": "number", "data": 0x1d}]
    assert run(tvm, "send-key", {"keys": keys, "hold-time": 50}) == {"return": {}}
    keyboard = tvm.vm.display.input().handlers[0]
    assert (keyboard.name, keyboard.events) == ("QEMU PS/2 Keyboard", 4)


def test_send_key_without_keyboard_succeeds(vm_cmdline: Callable[..., VmHarness]) -> None:
    """No handler takes the events (qemu_input_event_send returns); no error."""
    tvm = vm_cmdline("-S", "-M", "none")
    assert run(tvm, "send-key", {"keys": [{"type": "qcode", "data": "a"}]}) == {"return": {}}


def test_send_key_unknown_qcode(vm_cmdline: Callable[..., VmHarness]) -> None:
    """The schema's QKeyCode enum refuses an unknown name."""
    reply = run(vm_cmdline("-S"), "send-key", {"keys": [{"type": "qcode", "data": "bogus"}]})
    assert reply["error"] == {"class": "GenericError", "desc": "Invalid parameter 'bogus'"}


def test_hmp_sendkey_names(vm_cmdline: Callable[..., VmHarness]) -> None:
    """hmp_sendkey: QEMU's key names joined by '-', numbers as 0x.., '<' is `less`."""
    tvm = vm_cmdline("-S")
    assert hmp(tvm, "sendkey ctrl-alt-delete") == ""
    assert hmp(tvm, "sendkey <-0x1c 200") == ""
    assert hmp(tvm, "sendkey ctrl-nokey") == "invalid parameter: nokey\r\n"
    assert tvm.vm.display.input().handlers[0].events == 10


def test_input_send_event_needs_a_running_vm(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qmp_input_send_event: "VM not running" unless running or suspended."""
    reply = run(vm_cmdline("-S"), "input-send-event", {"events": [KEY_DOWN]})
    assert reply["error"] == {"class": "GenericError", "desc": "VM not running"}


def test_input_send_event_needs_a_handler(vm_cmdline: Callable[..., VmHarness]) -> None:
    """Every event needs a handler before any is sent: the PS/2 mouse is relative."""
    tvm = vm_cmdline()
    reply = run(tvm, "input-send-event", {"events": [KEY_DOWN, ABS_X]})
    assert reply["error"] == {"class": "GenericError",
                              "desc": "Input handler not found for event type abs"}
    assert tvm.vm.display.input().handlers[0].events == 0
    assert run(tvm, "input-send-event", {"events": [KEY_DOWN]}) == {"return": {}}
    assert tvm.vm.display.input().handlers[0].events == 1


def test_input_send_event_device_not_found(vm_cmdline: Callable[..., VmHarness]) -> None:
    """qemu_console_lookup_by_device_name: ERROR_CLASS_DEVICE_NOT_FOUND, before the
    run state."""
    reply = run(vm_cmdline("-S"), "input-send-event", {"device": "video0",
                                                       "events": [KEY_DOWN]})
    assert reply["error"] == {"class": "DeviceNotFound", "desc": "Device 'video0' not found"}


@pytest.mark.parametrize(("line", "events"), [
    ("mouse_move 10 -5", 2), ("mouse_move 1 1 0", 2), ("mouse_move 1 1 -1", 4)])
def test_hmp_mouse_move(vm_cmdline: Callable[..., VmHarness], line: str, events: int) -> None:
    """hmp_mouse_move: x and y motion, and a wheel click (down, up) for dz != 0."""
    tvm = vm_cmdline("-S")
    assert hmp(tvm, line) == ""
    assert tvm.vm.display.input().handlers[1].events == events


def test_hmp_mouse_button_sends_changes(vm_cmdline: Callable[..., VmHarness]) -> None:
    """hmp_mouse_button: the same state again changes nothing; a change sends one
    event per changed button."""
    tvm = vm_cmdline("-S")
    assert hmp(tvm, "mouse_button 0") == ""
    assert hmp(tvm, "mouse_button 5") == ""
    assert hmp(tvm, "mouse_button 5") == ""
    assert hmp(tvm, "mouse_button 1") == ""
    assert tvm.vm.display.input().handlers[1].events == 3
