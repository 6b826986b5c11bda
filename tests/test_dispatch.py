"""The dispatcher's command table: what is registered, what is handled, what is not yet.

QEMU 2.11.0 registers every schema command with generated code in sorted order, then
query-qmp-schema, device_add and netdev_add, minus those of other targets
(qmp-protocol.md §12, monitor.c monitor_init_qmp_commands and
qmp_unregister_commands_hack). Commands whose subsystem is not modelled yet answer a
GenericError that names them; this test prints that list, and later issues shrink it.
"""

from __future__ import annotations

from vmm.qmp.dispatch import Handler, not_implemented

CORE = {
    "qmp_capabilities", "query-commands", "query-events", "query-qmp-schema", "query-status",
    "stop", "cont", "system_reset", "system_powerdown", "system_wakeup", "quit", "inject-nmi",
    "query-name", "query-uuid", "query-version", "query-kvm", "query-target",
    "query-machines", "query-cpu-definitions", "query-cpu-model-expansion",
    "query-command-line-options", "query-vm-generation-id", "query-iothreads",
    "watchdog-set-action", "trace-event-get-state", "trace-event-set-state",
    "human-monitor-command", "getfd", "closefd", "add-fd", "remove-fd", "query-fdsets",
}


def test_not_implemented_list(vm_factory) -> None:
    """Print what still answers 'not implemented'; none of the core commands does,
    and each listed command really answers with the GenericError naming it."""
    vm = vm_factory()
    missing = vm.vm.dispatcher.unimplemented()
    print(f"\n{len(missing)} commands not implemented yet:\n  " + "\n  ".join(missing))
    assert not CORE & set(missing)
    talk = vm.talk()
    for name in missing:
        if name in ("device_add", "netdev_add"):
            continue  # not checked by the visitor: arguments would be needed
        command = vm.machine.schema.commands[name]
        if command.arg_type is not None and any(not m.optional for m in command.arg_type.members or ()):
            continue  # the visitor answers first; covered by the schema tests
        reply = talk.execute(name)
        assert reply == {"error": {"class": "GenericError", "desc": not_implemented(name)}}


def test_every_registered_command_is_in_the_schema(vm_factory) -> None:
    """The table holds only schema commands, in QEMU's registration order."""
    vm = vm_factory()
    order = vm.vm.dispatcher.registration_order
    assert set(order) <= set(vm.machine.schema.commands)
    generated = [n for n in order if n not in ("query-qmp-schema", "device_add", "netdev_add")]
    assert generated == sorted(generated, key=str.encode)
    assert order[-3:] == ["query-qmp-schema", "device_add", "netdev_add"]


def test_built_in_commands_are_table_entries(vm_factory) -> None:
    """monitor.c registers qmp_capabilities, query-commands, query-events and
    query-qmp-schema like any other command; the per-monitor ones (negotiation, fds,
    human-monitor-command) are entries bound to each monitor's session."""
    table = vm_factory().vm.dispatcher.table
    for name in ("qmp_capabilities", "query-commands", "query-events", "query-qmp-schema"):
        assert name in table
    per_monitor = {n for n, h in table.items() if h.per_monitor}
    assert per_monitor == {"qmp_capabilities", "getfd", "closefd", "add-fd", "remove-fd",
                           "query-fdsets", "human-monitor-command"}


def test_unimplemented_derives_from_the_table(vm_factory) -> None:
    """A registered command without a table entry is what unimplemented() lists, and
    it answers 'not implemented'."""
    vm = vm_factory()
    dispatcher = vm.vm.dispatcher
    assert "query-name" not in dispatcher.unimplemented()
    del dispatcher.table["query-name"]
    assert "query-name" in dispatcher.unimplemented()
    assert vm.talk().execute("query-name") == {
        "error": {"class": "GenericError", "desc": not_implemented("query-name")}}


def test_hmp_runs_through_the_table(vm_factory) -> None:
    """hmp.c calls qmp_* functions: HMP `info status` prints what the table's
    query-status handler returns."""
    vm = vm_factory()
    dispatcher = vm.vm.dispatcher
    dispatcher.table["query-status"] = Handler(
        lambda: {"running": False, "singlestep": True, "status": "debug"})
    assert vm.talk().execute("human-monitor-command", {"command-line": "info status"}) == {
        "return": "VM status: paused (single step mode) (debug)\r\n"}


def test_boxed_command_receives_one_value(vm_factory) -> None:
    """A boxed command's handler gets the argument object, wire-named, as one value
    (qapi-code-gen: 'boxed': true passes the type's pointer)."""
    vm = vm_factory()
    seen: list[object] = []
    vm.vm.dispatcher.table["blockdev-add"] = Handler(seen.append)
    options = {"driver": "null-co", "node-name": "n0", "read-only": True}
    assert vm.talk().execute("blockdev-add", options) == {"return": {}}
    assert seen == [options]
