"""blkdebug's data path: debug events, rules, injected errors [block/blkdebug.c].

Pure part of the `blockdev` layer (`blockdev.drivers`), loaded with the data path.
`blkdbg_event` is BLKDBG_EVENT: format drivers raise events (read_aio, write_aio, ...)
on their `file` child; the first blkdebug node down that chain processes them: the
rules of its current state fire (inject-error rules become the active set, newest
first; set-state rules pick the next state). Each request to the blkdebug node then
runs rule_check: the first active rule whose sector is -1 or inside the request
fails it with its errno (a `once` rule is removed).
"""

from __future__ import annotations

import errno as errno_mod
from typing import Any

from blockdev.drivers.passthrough import PassOps
from blockdev.graph import Node
from blockdev.iotypes import BlockIOError, GenericIO

SECTOR = 512


def blkdbg_event(child: Node | None, event: str) -> None:
    """BLKDBG_EVENT(child, event) / bdrv_debug_event: the first node down the
    `file` chain whose driver handles debug events (blkdebug) processes it."""
    bs = child
    while bs is not None and bs.driver is not None:
        if bs.driver.format_name == "blkdebug":
            blkdebug_event(bs, event)
            return
        bs = bs.file_bs


def blkdebug_event(bs: Node, event: str) -> None:
    """blkdebug_debug_event: rules of the current state fire: inject-error rules
    become the active set (newest first), set-state rules pick the next state."""
    extra = bs.state.extra
    state = extra.setdefault("state", 1)
    new_state = state
    injected = False
    for rule in list(_rules(extra)):
        if rule["event"] != event:
            continue
        if rule["state"] and rule["state"] != state:
            continue
        if rule["action"] == "inject-error":
            if not injected:
                extra["active"] = []
                injected = True
            extra["active"].insert(0, rule)
        else:
            new_state = rule["new_state"]
    extra["state"] = new_state


class BlkdebugOps(PassOps):
    """blkdebug: rule_check before each request [block/blkdebug.c rule_check]."""

    @staticmethod
    def _rule_check(bs: Node, offset: int, length: int) -> None:
        extra = bs.state.extra
        active = extra.get("active", [])
        for rule in active:
            at = rule["offset"]
            if at == -1 or (length and offset <= at < offset + length):
                break
        else:
            return
        err = rule["errno"]
        if not err:
            return
        if rule["once"]:
            active.remove(rule)
            if rule in _rules(extra):
                _rules(extra).remove(rule)
        raise BlockIOError(err)

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        self._rule_check(bs, offset, length)
        return super().pread(io, bs, offset, length)

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        self._rule_check(bs, offset, len(data))
        super().pwrite(io, bs, offset, data)

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int, unmap: bool) -> None:
        self._rule_check(bs, offset, length)
        super().pwrite_zeroes(io, bs, offset, length, unmap)

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        self._rule_check(bs, offset, length)
        super().pdiscard(io, bs, offset, length)

    def flush(self, io: GenericIO, bs: Node) -> None:
        self._rule_check(bs, 0, 0)


def _rules(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The node's rules, parsed from its config file and options on first use."""
    if "rules" not in extra:
        sections = _config_sections(extra.get("config"))
        extra["rules"] = parse_blkdebug_rules(extra.get("rule-options", {}), sections)
    return extra["rules"]


def _config_sections(path: str | None) -> list[tuple[str, dict[str, str]]]:
    """read_config's qemu_config_parse: `[inject-error]` / `[set-state]` groups of
    `name = "value"` lines (`#` starts a comment). The file was checked at open;
    one that went away since gives no rules."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out: list[tuple[str, dict[str, str]]] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            out.append((line[1:-1].strip(), {}))
        elif "=" in line and out:
            key, value = line.split("=", 1)
            out[-1][1][key.strip()] = value.strip().strip('"')
    return out


def parse_blkdebug_rules(taken: dict[str, Any],
                         sections: list[tuple[str, dict[str, str]]] | None = None
                         ) -> list[dict[str, Any]]:
    """add_rule for every rule: per action (inject-error, then set-state) those of
    the config file, then the `inject-error.N.*` / `set-state.N.*` options, each
    inserted at the head of its event's list."""
    rules: list[dict[str, Any]] = []
    for action in ("inject-error", "set-state"):
        groups = [values for name, values in sections or [] if name == action]
        indices = sorted({int(k.split(".")[1]) for k in taken
                          if k.startswith(action + ".") and k.split(".")[1].isdigit()})
        for i in indices:
            prefix = f"{action}.{i}."
            groups.append({k[len(prefix):]: v for k, v in taken.items()
                           if k.startswith(prefix)})
        for values in groups:
            rule: dict[str, Any] = {"action": action, "event": str(values.get("event", "")),
                                    "state": int(values.get("state", 0) or 0)}
            if action == "inject-error":
                sector = int(values.get("sector", -1))
                rule.update(errno=int(values.get("errno", errno_mod.EIO)),
                            once=_truthy(values.get("once", False)),
                            immediately=_truthy(values.get("immediately", False)),
                            offset=-1 if sector == -1 else sector * SECTOR)
            else:
                rule["new_state"] = int(values.get("new_state", 0))
            rules.insert(0, rule)
    return rules


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value in ("on", "yes", "true", "y")
    return bool(value)


