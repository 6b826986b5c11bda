"""A Hypothesis state machine over chardev-add/-remove/-change, frontends attaching
and letting go, netdev_add/netdev_del and set_link, one QMP request at a time.

Every request goes through `Dispatcher.execute` on a strict machine (schema visitor,
output checker). The chardev backends are real (null, ringbufs of good and bad
sizes, ptys, unix server sockets in a temporary directory, files); the netdevs are
user networks, hub ports and socket listeners on ports the kernel picks. The model
says which ids exist and which chardevs a frontend holds, and each rule asserts
QEMU 2.11's reply or error text. Invariants after every step: no frontend refers to
a removed chardev (the one it holds is the one registered under its id); the
registered chardevs and netdevs are the model's; every reply and event conforms to
the schema. At the end the machine closes and the process has exactly the
descriptors it had before (`/proc/self/fd`).

Sources: ../shared/reference/devices.md §4.2, §4.3, §5.1–§5.3; QEMU 2.11
chardev/char.c qmp_chardev_add, qmp_chardev_remove, qmp_chardev_change,
qemu_chr_is_busy; net/net.c qmp_netdev_add, qmp_netdev_del, qmp_set_link.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from devices.chardev.frontends import RingFrontend
from schema.output import check_event, check_return
from tests import emulator

ARGV = ["-machine", "pc", "-nodefaults", "--emu-strict"]
CHARDEV_IDS = st.sampled_from(["c0", "c1", "c2"])
NETDEV_IDS = st.sampled_from(["n0", "n1", "n2"])
BACKENDS = st.sampled_from(["null", "ringbuf", "ringbuf-bad", "pty", "unix", "file"])
NETDEV_KINDS = st.sampled_from(["user", "hubport", "socket"])


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class ChardevNetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fds_before = _fd_count()
        self.dir = Path(tempfile.mkdtemp(prefix="qmp-chr-"))
        self.vm = emulator.SyncVm(ARGV)
        self.seen_events = 0
        self.chardevs: dict[str, str] = {}  # id -> backend kind
        self.frontends: dict[str, RingFrontend] = {}  # chardev id -> its holder
        self.netdevs: dict[str, str] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.vm.vm.close()
        self.vm.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        assert _fd_count() == self.fds_before, "descriptors leaked"

    # -- talking to the emulator ------------------------------------------------------

    def run(self, command: str, **arguments: Any) -> dict[str, Any]:
        reply = self.vm.execute({"execute": command, "arguments": arguments})
        assert reply is not None
        if "return" in reply:
            check_return(self.vm.schema.commands[command], reply["return"])
        else:
            assert set(reply) == {"error"}
            assert reply["error"]["class"] in ("GenericError", "DeviceNotFound")
        for ev in self.vm.events[self.seen_events:]:
            check_event(self.vm.schema.events[ev.name], ev.data)
        self.seen_events = len(self.vm.events)
        return reply

    def backend(self, kind: str) -> dict[str, Any]:
        self.counter += 1
        if kind == "ringbuf":
            return {"type": "ringbuf", "data": {"size": 16}}
        if kind == "ringbuf-bad":
            return {"type": "ringbuf", "data": {"size": 12}}
        if kind == "unix":
            path = self.dir / f"s{self.counter}.sock"
            return {"type": "socket", "data": {"addr": {"type": "unix",
                                                        "data": {"path": str(path)}}}}
        if kind == "file":
            return {"type": "file", "data": {"out": str(self.dir / f"f{self.counter}")}}
        return {"type": kind, "data": {}}

    # -- chardevs ---------------------------------------------------------------------

    @rule(ident=CHARDEV_IDS, kind=BACKENDS)
    def chardev_add(self, ident: str, kind: str) -> None:
        reply = self.run("chardev-add", id=ident, backend=self.backend(kind))
        if kind == "ringbuf-bad":
            assert reply["error"]["desc"] == "size of ringbuf chardev must be power of two"
        elif ident in self.chardevs:
            assert reply["error"]["desc"] == (
                f"attempt to add duplicate property '{ident}' to object (type 'container')")
        else:
            assert "return" in reply
            assert ("pty" in reply["return"]) == (kind == "pty")
            self.chardevs[ident] = kind

    @rule(ident=CHARDEV_IDS)
    def chardev_remove(self, ident: str) -> None:
        reply = self.run("chardev-remove", id=ident)
        if ident not in self.chardevs:
            assert reply["error"]["desc"] == f"Chardev '{ident}' not found"
        elif ident in self.frontends:
            assert reply["error"]["desc"] == f"Chardev '{ident}' is busy"
        else:
            assert reply == {"return": {}}
            del self.chardevs[ident]

    @rule(ident=CHARDEV_IDS, kind=BACKENDS)
    def chardev_change(self, ident: str, kind: str) -> None:
        reply = self.run("chardev-change", id=ident, backend=self.backend(kind))
        if ident not in self.chardevs:
            assert reply["error"]["desc"] == f"Chardev '{ident}' does not exist"
        elif kind == "ringbuf-bad":
            assert reply["error"]["desc"] == "size of ringbuf chardev must be power of two"
            if ident not in self.frontends:
                del self.chardevs[ident]  # the easy case removed it before adding
        else:
            assert "return" in reply
            self.chardevs[ident] = kind

    @rule(ident=CHARDEV_IDS)
    def attach_frontend(self, ident: str) -> None:
        frontend = RingFrontend()
        try:
            frontend.attach(self.vm.vm.chardevs, ident, owner="test")
        except Exception as err:
            if ident not in self.chardevs:
                assert str(err) == f"Chardev '{ident}' not found"
            else:
                assert ident in self.frontends
                assert str(err) == f"Device '{ident}' is in use"
            return
        assert ident in self.chardevs and ident not in self.frontends
        self.frontends[ident] = frontend

    @rule(ident=CHARDEV_IDS)
    def detach_frontend(self, ident: str) -> None:
        frontend = self.frontends.pop(ident, None)
        if frontend is not None:
            assert frontend.chardev is not None
            self.vm.vm.chardevs.detach(frontend.chardev, frontend)

    @rule(ident=CHARDEV_IDS, data=st.binary(max_size=40))
    def ringbuf_roundtrip(self, ident: str, data: bytes) -> None:
        frontend = self.frontends.get(ident)
        if frontend is None or self.chardevs.get(ident) != "ringbuf":
            return
        frontend.write(data)
        text = self.run("ringbuf-read", device=ident, size=64, format="base64")["return"]
        import base64

        assert base64.b64decode(text) == data[-16:]

    # -- netdevs ----------------------------------------------------------------------

    @rule(ident=NETDEV_IDS, kind=NETDEV_KINDS)
    def netdev_add(self, ident: str, kind: str) -> None:
        args: dict[str, Any] = {"type": kind, "id": ident}
        if kind == "hubport":
            args["hubid"] = 0
        if kind == "socket":
            args["listen"] = "127.0.0.1:0"
        reply = self.run("netdev_add", **args)
        if ident in self.netdevs:
            assert reply["error"]["desc"] == f"Duplicate ID '{ident}' for netdev"
        else:
            assert reply == {"return": {}}
            self.netdevs[ident] = kind

    @rule(ident=NETDEV_IDS)
    def netdev_del(self, ident: str) -> None:
        reply = self.run("netdev_del", id=ident)
        if ident in self.netdevs:
            assert reply == {"return": {}}
            del self.netdevs[ident]
        else:
            assert reply["error"] == {"class": "DeviceNotFound",
                                      "desc": f"Device '{ident}' not found"}

    @rule(ident=NETDEV_IDS, up=st.booleans())
    def set_link(self, ident: str, up: bool) -> None:
        reply = self.run("set_link", name=ident, up=up)
        if ident in self.netdevs:
            assert reply == {"return": {}}
            client = self.vm.vm.net.find(ident)
            assert client is not None and client.link_down is not up
        else:
            assert reply["error"]["class"] == "DeviceNotFound"

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def frontends_hold_registered_chardevs(self) -> None:
        registered = self.vm.vm.chardevs.devices
        for ident, frontend in self.frontends.items():
            assert registered.get(ident) is frontend.chardev
            assert frontend.chardev is not None and frontend.chardev.frontend is frontend

    @invariant()
    def ids_agree(self) -> None:
        assert set(self.vm.vm.chardevs.devices) == set(self.chardevs)
        names = {c.name for c in self.vm.vm.net.clients}
        assert names == set(self.netdevs)

    @invariant()
    def query_chardev_conforms(self) -> None:
        labels = {c["label"] for c in self.run("query-chardev")["return"]}
        assert labels == set(self.chardevs)


TestChardevNet = ChardevNetMachine.TestCase
TestChardevNet.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow])
