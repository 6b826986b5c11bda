"""QMP's display commands: VNC, SPICE (compiled in, not configured) and screendump.

Handlers of the `devices.display` package [qmp.c qmp_set_password,
qmp_expire_password, qmp_change_vnc_password, qmp_add_client; ui/vnc.c qmp_query_vnc,
qmp_query_vnc_servers; ui/spice-core.c qmp_query_spice; monitor.c
qmp_client_migrate_info; ui/console.c qmp_screendump]. The build whose catalogue the
emulator serves has SPICE compiled in, and no machine here is started with `-spice`:
SPICE answers as QEMU does then (include/ui/qemu-spice.h qemu_using_spice). The
models are `devices.display.vnc` and `devices.display.console`; the PPM writer is
`devices.dump.ppm`. The input commands (`query-mice`, `send-key`,
`input-send-event`) are here too: the console routes input to the input handlers of
`devices.input` (ui/input.c, ui/input-legacy.c). The models are built on first use:
a plain start-up loads none of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from schema.errors import DeviceNotActive, DeviceNotFound, GenericError
from schema.handlers import qmp_command
from schema.opts.cutils import strtoull
from schema.osdep import PLAIN_OPENER, Opener

if TYPE_CHECKING:
    from devices.display.console import Console
    from devices.display.vnc import VncDisplays
    from devices.input import Input

SPICE_NOT_IN_USE = "SPICE is not in use"
# ui/input.c qmp_input_send_event: only a running (or suspended) VM takes events.
VM_NOT_RUNNING = "VM not running"
NO_CONSOLE = "There is no QemuConsole I can screendump from."


def _no_spice() -> DeviceNotActive:
    return DeviceNotActive(SPICE_NOT_IN_USE)


def _no_fd(fdname: str) -> int:
    raise GenericError(f"File descriptor named '{fdname}' has not been found")


class DisplayCommands:
    """The display commands of one machine."""

    def __init__(self, vnc: Callable[[], VncDisplays], console: Callable[[], Console | None],
                 wall: Callable[[], float], files: Opener | None = None) -> None:
        self.vnc = vnc  # built on first use
        self.console = console  # the first console, None on a board without one
        self.wall = wall  # time(NULL), for expire_password's `+SECONDS`
        self.files = PLAIN_OPENER if files is None else files
        # monitor.c monitor_get_fd(cur_mon, ...): set by the composition root.
        self.get_fd: Callable[[str], int] = _no_fd

    # -- screendump -------------------------------------------------------------------

    @qmp_command("screendump")
    def screendump(self, filename: str) -> None:
        """qmp_screendump: the first console, written by ppm_save."""
        console = self.console()
        if console is None:
            raise GenericError(NO_CONSOLE)
        from devices.dump.ppm import save_ppm

        save_ppm(filename, console, self.files)

    # -- VNC --------------------------------------------------------------------------

    @qmp_command("query-vnc")
    def query_vnc(self) -> dict[str, Any]:
        return self.vnc().query_vnc()

    @qmp_command("query-vnc-servers")
    def query_vnc_servers(self) -> list[dict[str, Any]]:
        return self.vnc().query_vnc_servers()

    @qmp_command("change-vnc-password")
    def change_vnc_password(self, password: str) -> None:
        """qmp_change_vnc_password."""
        self.vnc().set_password(password)

    @qmp_command("set_password")
    def set_password(self, protocol: str, password: str, connected: str | None = None) -> None:
        """qmp_set_password: `connected` first, then the protocol; VNC keeps its
        clients connected (only `keep`)."""
        if connected is not None and connected not in ("fail", "disconnect", "keep"):
            raise GenericError("Invalid parameter 'connected'")
        if protocol == "spice":
            raise _no_spice()
        if protocol == "vnc":
            if connected in ("fail", "disconnect"):
                raise GenericError("Invalid parameter 'connected'")
            self.vnc().set_password(password)
            return
        raise GenericError("Invalid parameter 'protocol'")

    @qmp_command("expire_password")
    def expire_password(self, protocol: str, time: str) -> None:
        """qmp_expire_password: `now`, `never`, `+SECONDS` from now, or UNIX seconds
        (strtoull: what does not parse counts as 0, already expired)."""
        when: float
        if time == "now":
            when = 0
        elif time == "never":
            when = math.inf
        elif time.startswith("+"):
            when = int(self.wall()) + strtoull(time[1:], 10)[0]
        else:
            when = strtoull(time, 10)[0]
        if protocol == "spice":
            raise _no_spice()
        if protocol == "vnc":
            self.vnc().expire_password(when)
            return
        raise GenericError("Invalid parameter 'protocol'")

    @qmp_command("add_client")
    def add_client(self, protocol: str, fdname: str, skipauth: bool | None = None,
                   tls: bool | None = None) -> None:
        """qmp_add_client: the monitor's fd goes to SPICE (not in use), to the first
        VNC display (as a client, its authentication skipped with `skipauth`), or to
        a chardev."""
        fd = self.get_fd(fdname)
        if protocol == "spice":
            os.close(fd)
            raise _no_spice()
        if protocol == "vnc":
            display = self.vnc().find(None)
            if display is None:
                os.close(fd)  # vnc_display_add_client: no display takes it
                return
            self.vnc().ensure_edge().add_client(display, fd, bool(skipauth))
            return
        os.close(fd)
        raise GenericError(f"protocol '{protocol}' is invalid")

    # -- SPICE --------------------------------------------------------------------------

    @qmp_command("query-spice")
    def query_spice(self) -> dict[str, Any]:
        """qmp_query_spice without a SPICE server: disabled, client mouse mode."""
        return {"enabled": False, "migrated": False, "mouse-mode": "client"}

    @qmp_command("client_migrate_info")
    def client_migrate_info(self, protocol: str, hostname: str, port: int | None = None,
                            tls_port: int | None = None,
                            cert_subject: str | None = None) -> None:
        """qmp_client_migrate_info: only SPICE has a client to tell."""
        if protocol == "spice":
            raise _no_spice()
        raise GenericError("Parameter 'protocol' expects spice")


class InputCommands:
    """QMP's input commands of one machine."""

    def __init__(self, input: Callable[[], Input], running: Callable[[], bool]) -> None:
        self.input = input  # built on first use
        self.running = running  # running or suspended

    @qmp_command("query-mice")
    def query_mice(self) -> list[dict[str, Any]]:
        return self.input().mice()

    @qmp_command("send-key")
    def send_key(self, keys: Sequence[dict[str, Any]], hold_time: int | None = None) -> None:
        """ui/input-legacy.c qmp_send_key: every key down, then up in reverse order.
        Without a keyboard the events go nowhere and the command still succeeds; the
        hold time spaces the events on the virtual clock (the guest's concern: nothing
        the monitor sees depends on it)."""
        inp = self.input()
        for _ in keys:
            inp.deliver("key")
        for _ in keys:
            inp.deliver("key")

    @qmp_command("input-send-event")
    def input_send_event(self, events: Sequence[dict[str, Any]], device: str | None = None,
                         head: int | None = None) -> None:
        """ui/input.c qmp_input_send_event: the console named by `device`, the run
        state, then a handler for every event's kind, before any is sent."""
        if device is not None:
            # qemu_console_lookup_by_device_name: no console shows a device of that id
            # (the VGA has no qdev id on the command line of this machine).
            raise DeviceNotFound(f"Device '{device}' not found")
        if not self.running():
            raise GenericError(VM_NOT_RUNNING)
        from devices.input import KIND_BITS

        inp = self.input()
        for event in events:
            if inp.find(KIND_BITS[event["type"]]) is None:
                raise GenericError(f"Input handler not found for event type {event['type']}")
        for event in events:
            inp.deliver(event["type"])
