"""Helpers of the device tests: whole machines from a command line (`SyncVm`), made
by the `vms` fixture and closed after the test, and one-line QMP calls that check the
reply against the schema (the machines are strict)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.emulator import SyncVm


@pytest.fixture
def vms() -> Iterator[list[SyncVm]]:
    """The machines a test made (`new_vm`); closed after it."""
    made: list[SyncVm] = []
    yield made
    for vm in made:
        vm.close()


def new_vm(vms: list[SyncVm], *argv: str) -> SyncVm:
    vm = SyncVm(list(argv))
    vms.append(vm)
    return vm


def execute(vm: SyncVm, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """The whole reply to one command; every reply and event so far conformed."""
    request: dict[str, Any] = {"execute": name}
    if arguments is not None:
        request["arguments"] = arguments
    reply = vm.execute(request)
    assert reply is not None
    assert vm.mismatches() == []
    return reply


def ok(vm: SyncVm, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """The return value of a command that must succeed."""
    reply = execute(vm, name, arguments)
    assert "return" in reply, reply
    return reply["return"]


def error(vm: SyncVm, name: str, arguments: dict[str, Any] | None = None) -> tuple[str, str]:
    """The class and text of a command that must fail."""
    reply = execute(vm, name, arguments)
    assert "error" in reply, reply
    return reply["error"]["class"], reply["error"]["desc"]


def hmp(vm: SyncVm, line: str) -> str:
    return ok(vm, "human-monitor-command", {"command-line": line})


def events(vm: SyncVm, *names: str) -> list[tuple[str, Any]]:
    """The events sent since the last call (only `names`, if given), as (name, data)."""
    out = [(e.name, e.data) for e in vm.events if not names or e.name in names]
    vm.events.clear()
    return out
