"""`change`: qmp.c qmp_change across the display and the block layer.

Pins qmp.c qmp_change (`vnc` or a block device), qmp_change_vnc (the password
argument is required), qmp_change_vnc_password and ui/vnc.c vnc_display_password
(no display, or no password authentication: "Could not set password"),
qmp_change_vnc_listen ("id not supported", the -vnc option syntax, and
vnc_display_open's "VNC display not active"). The block half is pinned with the
media tests (tests/test_block_media.py).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devices.display.vnc import VncDisplay, VncDisplays
from tests.conftest import VmHarness
from tests.test_block_support import Block, fails


@pytest.fixture
def b() -> Block:
    return Block()


@pytest.mark.parametrize("target", ["password", "passwd"])
def test_vnc_password_without_display(b: Block, target: str) -> None:
    """vnc_display_password: no VNC display -> QERR_SET_PASSWD_FAILED."""
    assert b.error("change", device="vnc", target=target, arg="secret") == (
        "GenericError", "Could not set password")


def test_vnc_passwd_needs_the_argument(b: Block) -> None:
    """qmp_change_vnc: `passwd` without `arg` is QERR_MISSING_PARAMETER too."""
    assert b.error("change", device="vnc", target="passwd") == (
        "GenericError", "Parameter 'password' is missing")


def test_vnc_listen_without_display(b: Block) -> None:
    """qmp_change_vnc_listen -> vnc_display_open("default"): no display."""
    assert b.error("change", device="vnc", target=":1") == (
        "GenericError", "VNC display not active")


def test_vnc_listen_refuses_an_id(b: Block) -> None:
    """qmp_change_vnc_listen: any `id=` in the target is refused before parsing."""
    assert b.error("change", device="vnc", target=":1,id=other") == (
        "GenericError", "id not supported")


@pytest.mark.parametrize(("target", "desc"), [
    (":1,bogus=1", "Invalid parameter 'bogus'"),
    (":1,password=maybe", "Parameter 'password' expects 'on' or 'off'"),
])
def test_vnc_listen_parses_like_dash_vnc(b: Block, target: str, desc: str) -> None:
    """vnc_parse: the target is a -vnc option string (qemu_vnc_opts), and its
    errors come before the display lookup."""
    assert b.error("change", device="vnc", target=target) == ("GenericError", desc)


def test_display_without_password_auth_refuses_a_password() -> None:
    """vnc_display_password: VNC_AUTH_NONE -> -EINVAL -> "Could not set password"."""
    displays = VncDisplays(displays=[VncDisplay(id="default", options={"vnc": ":0"})])
    with fails("Could not set password"):
        displays.set_password("secret")


def test_display_with_password_auth_takes_it() -> None:
    """vnc_display_password on the first display (id NULL), opened with password=on
    (vnc_display_open sets the display's auth)."""
    display = VncDisplay(id="default", options={"vnc": "none", "password": "on"})
    displays = VncDisplays(displays=[display])
    displays.open(display)
    displays.set_password("secret")
    assert display.password == "secret"


def test_reopen_keeps_the_password() -> None:
    """vnc_display_open: vnc_display_close keeps vd->password; new options apply."""
    display = VncDisplay(id="default", options={"vnc": "none", "password": "on"},
                         password="secret")
    VncDisplays(displays=[display]).reopen("default", {"vnc": "none", "password": "on",
                                                       "share": "ignore"})
    assert (display.options["share"], display.password) == ("ignore", "secret")


def test_change_is_served_by_the_machine(vm_factory: Callable[..., VmHarness]) -> None:
    """The composed handler is registered with the machine's dispatcher: through
    the schema visitor, `change vnc` answers as QEMU without -vnc does."""
    talk = vm_factory().talk()
    assert talk.execute("change", {"device": "vnc", "target": "password",
                                   "arg": "x"}) == {
        "error": {"class": "GenericError", "desc": "Could not set password"}}
    assert talk.execute("change", {"device": "nope", "target": "null-co://"}) == {
        "error": {"class": "DeviceNotFound", "desc": "Device 'nope' not found"}}
