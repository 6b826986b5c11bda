"""HMP's display, input and dump commands: info vnc, info mice, mouse_move,
mouse_button, info dump.

`vmm` layer, HMP side of `devices.display`, `devices.input` and `devices.dump`
[hmp.c hmp_info_vnc, hmp_info_mice, hmp_info_dump; monitor.c hmp_mouse_move,
hmp_mouse_button]. The queries go through QMP as hmp.c calls the qmp_* functions;
the mouse commands feed the input layer directly, as monitor.c does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schema.opts.cutils import strtoll, to_c_int
from vmm.hmp.interpreter import Hmp

Args = dict[str, Any]


def _basic(hmp: Hmp, info: dict[str, Any], name: str) -> None:
    """hmp_info_VncBasicInfo."""
    ws = " (Websocket)" if info["websocket"] else ""
    hmp.printf(f"  {name}: {info['host']}:{info['service']} ({info['family']}{ws})\n")


def _authcrypt(hmp: Hmp, indent: str, auth: str, vencrypt: str | None) -> None:
    hmp.printf(f"{indent}Auth: {auth} (Sub: {vencrypt or 'none'})\n")


def hmp_info_vnc(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_vnc: every display, its listeners, then its clients."""
    displays = hmp.qmp("query-vnc-servers")
    if not displays:
        hmp.printf("None\n")
        return
    for info in displays:
        hmp.printf(f"{info['id']}:\n")
        for server in info["server"]:
            _basic(hmp, server, "Server")
            _authcrypt(hmp, "    ", server["auth"], server.get("vencrypt"))
        for client in info["clients"]:
            _basic(hmp, client, "Client")
            hmp.printf(f"    x509_dname: {client.get('x509_dname', 'none')}\n")
            hmp.printf(f"    sasl_username: {client.get('sasl_username', 'none')}\n")
        if not info["server"]:
            _authcrypt(hmp, "  ", info["auth"], info.get("vencrypt"))
        if "display" in info:
            hmp.printf(f"  Display: {info['display']}\n")


def vnc_password(hmp: Hmp, qmp: Callable[[], object]) -> None:
    """A QMP call that may reach vnc_display_password: what that prints with
    error_printf_unless_qmp (a display without password auth) goes to this monitor
    before the command's error."""
    vnc = hmp.state.vnc() if hmp.state.vnc is not None else None
    if vnc is not None:
        vnc.printed.clear()
    try:
        qmp()
    finally:
        if vnc is not None:
            for text in vnc.printed:
                hmp.printf(text)
            vnc.printed.clear()


def hmp_set_password(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_set_password."""
    vnc_password(hmp, lambda: hmp.qmp("set_password", args["protocol"], args["password"],
                                      connected=args.get("connected")))


def hmp_info_mice(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_mice."""
    mice = hmp.qmp("query-mice")
    if not mice:
        hmp.printf("No mouse devices connected\n")
        return
    for mouse in mice:
        star = "*" if mouse["current"] else " "
        absolute = " (absolute)" if mouse["absolute"] else ""
        hmp.printf(f"{star} Mouse #{mouse['index']}: {mouse['name']}{absolute}\n")


def hmp_info_dump(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_dump: the status, and the percentage while active."""
    result = hmp.qmp("query-dump")
    hmp.printf(f"Status: {result['status']}\n")
    if result["status"] == "active":
        percent = 100.0 * result["completed"] / result["total"]
        hmp.printf(f"Finished: {percent:.2f} %\n")


def _c_strtol(text: str) -> int:
    """strtol(text, NULL, 0) into an int."""
    return to_c_int(strtoll(text, 0)[0])


def hmp_mouse_move(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_mouse_move: relative motion on x and y, and a wheel click for a
    non-zero dz, to the current mouse (nothing without one)."""
    _c_strtol(args["dx_str"])
    _c_strtol(args["dy_str"])
    if hmp.state.input is None:
        return
    inp = hmp.state.input()
    inp.deliver("rel")
    inp.deliver("rel")
    dz = args.get("dz_str")
    if dz is not None and _c_strtol(dz) != 0:
        inp.deliver("btn")
        inp.deliver("btn")


def hmp_mouse_button(hmp: Hmp, args: Args) -> None:
    """monitor.c hmp_mouse_button: the buttons whose state changed (left, middle,
    right) go to the current mouse; the same state again changes nothing."""
    state = to_c_int(args["button_state"])
    if hmp.state.input is None:
        return
    inp = hmp.state.input()
    if state == inp.buttons:
        return
    for bit in (1, 4, 2):  # qemu_input_update_buttons: left, right, middle
        if (state ^ inp.buttons) & bit:
            inp.deliver("btn")
    inp.buttons = state
