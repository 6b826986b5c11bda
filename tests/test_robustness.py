"""No command of the schema crashes the emulator on arguments the schema accepts.

For every command the visitor checks, Hypothesis draws valid arguments from the
schema (`schema.strategies`) and runs them through the dispatcher on a fresh strict
machine: each must end in a reply (a schema-conforming `return`, checked by the
output checker, or a QMP error), never in an exception. The brief: the emulator
never crashes on any input and every reply conforms to the schema.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from schema.strategies import Strategies
from vmm.qmp.dispatch import MonitorSession

SKIP = {"quit"}  # ends the machine; covered by its own tests


def command_names(schema) -> list[str]:
    return sorted(n for n, c in schema.commands.items() if c.gen and n not in SKIP)


@pytest.fixture(scope="module")
def strategies(schema) -> Strategies:
    return Strategies(schema)


def test_valid_arguments_never_raise(schema, strategies, vm_factory, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Any relative file a command creates lands in this test's directory."""
    monkeypatch.chdir(tmp_path)
    seen = 0
    def check(name: str) -> None:
        @settings(max_examples=8, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(strategies.arguments(name))
        def run(arguments: dict) -> None:
            nonlocal seen
            vm = vm_factory()
            session = MonitorSession()
            session.negotiated = True
            try:
                reply = vm.vm.dispatcher.execute(
                    session, {"execute": name, "arguments": arguments})
                vm.machine.process_requests()
            finally:
                vm.vm.block.close_all()
            assert reply is not None and ("return" in reply or "error" in reply)
            seen += 1

        run()

    for name in command_names(schema):
        check(name)
    assert seen > len(command_names(schema))
    assert os.getcwd() == str(tmp_path)
