"""The catalogue a real QEMU 2.11.0 x86_64 answers with, read from its recording.

Data of the `schema` layer, read by every subsystem: `schema/data/qemu-2.11.0-x86_64-probe.replies` holds libvirt's
capability probe of a real binary (a KVM session, then a TCG one). This module turns
that conversation into lookups: version, target, the command and event lists, machine
types, CPU models (per accelerator) and their expansions, QOM types, device
properties, TPM models, command-line options, migration capabilities; and
`schema/data/trace-event-get-state-all.json` into the binary's trace events. Nothing here is
typed in by hand; a Catalog is a value the Machine is given, loaded once per process.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import attrs

RECORDING = Path(__file__).resolve().parent / "data" / "qemu-2.11.0-x86_64-probe.replies"
TRACE_EVENTS = Path(__file__).resolve().parent / "data" / "trace-event-get-state-all.json"
DATA = Path(__file__).resolve().parent / "data"


@attrs.frozen
class TraceEventInfo:
    """One trace event of the binary: its name, whether it is per-vCPU, and whether it
    was compiled in (its static state: "unavailable" events are not)."""

    name: str
    vcpu: bool
    available: bool


@attrs.define
class Exchange:
    """One command of the recording and QEMU's reply to it, parsed the first time it
    is read: a machine reads a few replies of the recording (query-qmp-schema's
    180 kB, half of it, never), and parsing all of them cost every start-up."""

    session: str  # "kvm" (the main probe) or "tcg" (the second pass)
    execute: str
    arguments: Any
    reply_text: str = attrs.field(repr=False)
    _reply: dict[str, Any] | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def parsed(self) -> bool:
        return self._reply is not None

    @property
    def reply(self) -> dict[str, Any]:
        if self._reply is None:
            self._reply = json.loads(self.reply_text)
        return self._reply


def read_recording(path: Path = RECORDING) -> list[Exchange]:
    """Pair every recorded command with its reply, noting which session it was in."""
    text = path.read_text(encoding="utf-8")
    chunks = re.split(r"\n\n(?=\{)", text.strip())
    exchanges: list[Exchange] = []
    session = "kvm"
    for command, reply in zip(map(json.loads, chunks[0::2]), chunks[1::2], strict=True):
        if command["execute"] == "qmp_capabilities" and exchanges:
            session = "tcg"
        exchanges.append(Exchange(session, command["execute"], command.get("arguments"),
                                  reply))
    return exchanges


@attrs.define(kw_only=True)
class Catalog:
    """Lookups over the recording. Values returned are copies the caller may keep."""

    exchanges: list[Exchange]
    _trace_events: tuple[TraceEventInfo, ...] | None = None
    _files: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def load(cls, path: Path = RECORDING) -> Catalog:
        return cls(exchanges=read_recording(path))

    def _reply(self, execute: str, arguments: Any = None, session: str = "kvm") -> Any:
        for ex in self.exchanges:
            if ex.execute == execute and ex.session == session and \
                    (arguments is None or ex.arguments == arguments):
                if "error" in ex.reply:
                    return None
                return copy.deepcopy(ex.reply["return"])
        return None

    # -- identity ----------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return self._reply("query-version")

    def target(self) -> dict[str, Any]:
        return self._reply("query-target")

    def kvm_present(self) -> bool:
        return bool(self._reply("query-kvm")["present"])

    # -- the monitor's tables ------------------------------------------------------------

    def command_names(self) -> list[str]:
        """`query-commands` of the x86_64 binary (reverse registration order)."""
        return [c["name"] for c in self._reply("query-commands")]

    def event_names(self) -> list[str]:
        return [e["name"] for e in self._reply("query-events")]

    # -- machine, CPUs ----------------------------------------------------------------------

    def machines(self) -> list[dict[str, Any]]:
        return self._reply("query-machines")

    def cpu_definitions(self, accel: str) -> list[dict[str, Any]]:
        session = "kvm" if accel == "kvm" else "tcg"
        return self._reply("query-cpu-definitions", session=session)

    def cpu_model_expansions(self, accel: str) -> list[tuple[Any, dict[str, Any]]]:
        """The recorded (arguments, reply) pairs of query-cpu-model-expansion."""
        session = "kvm" if accel == "kvm" else "tcg"
        return [(copy.deepcopy(ex.arguments), copy.deepcopy(ex.reply["return"]))
                for ex in self.exchanges
                if ex.execute == "query-cpu-model-expansion" and ex.session == session
                and "return" in ex.reply]

    def cpu_model_expansion(self, model: str, type: str) -> dict[str, Any] | None:
        """The recorded reply of query-cpu-model-expansion of `model` without
        properties (`type` full or static), or None for a model the binary does
        not have; read on first use (`data/qemu-2.11.0-cpu-model-expansion.json.gz`,
        a TCG binary)."""
        reply = self._data("qemu-2.11.0-cpu-model-expansion.json.gz").get(model, {}).get(type)
        return None if reply is None or "return" not in reply else \
            copy.deepcopy(reply["return"])

    # -- devices, QOM --------------------------------------------------------------------

    def qom_types(self) -> list[dict[str, Any]]:
        return self._reply("qom-list-types")

    def qom_ancestors(self, typename: str) -> list[str]:
        """The parents of a QOM type, nearest first ([] for an unknown type)."""
        for ex in self.exchanges:
            if ex.execute == "qom-list-types" and ex.arguments is None:
                parents = {t["name"]: t.get("parent") for t in ex.reply["return"]}
                break
        else:
            return []
        chain: list[str] = []
        parent = parents.get(typename)
        while parent is not None and parent not in chain:
            chain.append(parent)
            parent = parents.get(parent)
        return chain

    def device_properties(self, typename: str) -> list[dict[str, Any]] | None:
        """Recorded properties of a device type, or None if it was not probed/found."""
        return self._reply("device-list-properties", arguments={"typename": typename})

    def tpm_models(self) -> list[str]:
        return self._reply("query-tpm-models")

    def tpm_types(self) -> list[str]:
        return self._reply("query-tpm-types")

    def command_line_options(self) -> list[dict[str, Any]]:
        return self._reply("query-command-line-options")

    def migrate_capabilities(self) -> list[dict[str, Any]]:
        return self._reply("query-migrate-capabilities")

    def qmp_schema(self) -> list[dict[str, Any]]:
        return self._reply("query-qmp-schema")

    # -- tracing ---------------------------------------------------------------------------

    def trace_events(self) -> tuple[TraceEventInfo, ...]:
        """Every trace event of the binary in `trace-event-get-state`'s order, read on
        first use (`data/trace-event-get-state-all.json`)."""
        if self._trace_events is None:
            recorded = json.loads(TRACE_EVENTS.read_text(encoding="utf-8"))["return"]
            self._trace_events = tuple(
                TraceEventInfo(e["name"], e["vcpu"], e["state"] != "unavailable")
                for e in recorded)
        return self._trace_events

    # -- the device catalogue (read on first use) ------------------------------------------

    def _data(self, name: str) -> Any:
        """A JSON file of `data/` (gzip-compressed when its name says so), read once."""
        if name not in self._files:
            path = DATA / name
            if name.endswith(".gz"):
                import gzip

                with gzip.open(path, "rt", encoding="utf-8") as f:
                    self._files[name] = json.load(f)
            else:
                self._files[name] = json.loads(path.read_text(encoding="utf-8"))
        return self._files[name]

    def qom_type_list(self) -> list[dict[str, Any]]:
        """`qom-list-types {"abstract": true}` of the 2.11.0 binary: every QOM type
        with its parent and abstract flag, in the recorded (hash) order."""
        return self._data("qom-list-types.json.gz")["all+abstract"]["response"]["return"]

    def qom_type_index(self) -> dict[str, dict[str, Any]]:
        """`qom_type_list` by type name."""
        if "type-index" not in self._files:
            self._files["type-index"] = {t["name"]: t for t in self.qom_type_list()}
        return self._files["type-index"]

    def all_device_properties(self) -> dict[str, list[dict[str, Any]]]:
        """`device-list-properties` of every non-abstract device type, by type."""
        if "device-properties" not in self._files:
            self._files["device-properties"] = {
                t: r["return"] for t, r in
                self._data("device-list-properties.json.gz").items() if "return" in r}
        return self._files["device-properties"]

    def qom_templates(self) -> dict[str, Any]:
        """Per device and bus type, its recorded property values and internal objects
        (memory regions, GPIO lines), and per board its machine object
        (`data/qom-templates.json.gz`, see data/README.md)."""
        return self._data("qom-templates.json.gz")

    def cli_help(self, argv: str) -> dict[str, Any]:
        """A recorded help listing of the 2.11.0 binary (`data/qemu-2.11.0-cli-help.json`):
        `argv` is the option as typed (`-machine help`, `-machine pc,help`, `-cpu help`),
        the value has its `stdout`, `stderr` and `exit-status`."""
        entry: dict[str, Any] = self._data("qemu-2.11.0-cli-help.json")[argv]
        return entry

    def device_help_text(self) -> str:
        """`-device help` as the 2.11.0 binary prints it (`data/device-help.txt`)."""
        return (DATA / "device-help.txt").read_text(encoding="utf-8")

    def device_help(self) -> dict[str, tuple[str, str | None]]:
        """`-device help`: every user-creatable device type -> (its bus type, its
        alias or None), from `data/device-help.txt`."""
        if "device-help" not in self._files:
            out: dict[str, tuple[str, str | None]] = {}
            for line in (DATA / "device-help.txt").read_text(encoding="utf-8").splitlines():
                m = re.match(r'name "([^"]+)"(?:, bus ([^,]+))?(?:, alias "([^"]+)")?', line)
                if m:
                    out[m.group(1)] = (m.group(2) or "", m.group(3))
            self._files["device-help"] = out
        return self._files["device-help"]
