"""QMP commands of the machine core: run states, identity, catalogue, fds, tracing.

Handlers of the `vmm` layer, registered by schema name. Each is a thin view of the
Machine's state or a request to it; the schema visitor has already checked the
arguments, and the dispatcher checks and orders the replies. Behaviour and texts
follow QEMU 2.11.0 (`../shared/reference/runstate.md`, `qmp-protocol.md` §12,
`devices.md` §11, §12) with the QEMU source function named in each docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schema.errors import CommandNotFound, GenericError
from schema.handlers import qmp_command

if TYPE_CHECKING:
    from vmm.machine.core import Machine
    from vmm.qmp.dispatch import MonitorSession


def insertion_for_wire_order(value: Any) -> Any:
    """Rebuild recorded `any` data so that it serialises in the recorded member order.

    A QDict writes the keys of one bucket newest first, so inserting a recorded
    object's keys in reverse reproduces the order QEMU wrote them in.
    """
    if isinstance(value, dict):
        return {k: insertion_for_wire_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [insertion_for_wire_order(v) for v in value]
    return value


class CoreCommands:
    """The commands the Machine answers itself (the rest belong to subsystems)."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.trace = machine.trace

    # -- run state ---------------------------------------------------------------------

    @qmp_command("query-status")
    def query_status(self) -> dict[str, Any]:
        """vl.c qmp_query_status."""
        rs = self.machine.runstate
        return {"running": rs.running, "singlestep": rs.singlestep, "status": rs.state}

    @qmp_command("stop")
    def stop(self) -> None:
        """qmp.c qmp_stop: not during a dump; while waiting for a migration, only
        cancel the autostart."""
        m = self.machine
        if m.dump_in_progress():
            raise GenericError("There is a dump in process, please wait.")
        if m.runstate.state == "inmigrate":
            m.autostart = False
        else:
            m.vm_stop("paused")

    @qmp_command("cont")
    def cont(self) -> None:
        """qmp.c qmp_cont."""
        m = self.machine
        if m.dump_in_progress():
            raise GenericError("There is a dump in process, please wait.")
        if m.runstate.state in ("shutdown", "internal-error"):
            raise GenericError("Resetting the Virtual Machine is required")
        if m.runstate.state == "suspended":
            return
        m.cont()

    @qmp_command("system_reset")
    def system_reset(self) -> None:
        """qmp.c qmp_system_reset: the reset itself happens in the main loop."""
        self.machine.request_reset("host-qmp")

    @qmp_command("system_powerdown")
    def system_powerdown(self) -> None:
        """qmp.c qmp_system_powerdown -> POWERDOWN from the main loop, in any state."""
        self.machine.request_powerdown()

    @qmp_command("system_wakeup")
    def system_wakeup(self) -> None:
        """qmp.c qmp_system_wakeup: a no-op unless suspended."""
        self.machine.request_wakeup()

    @qmp_command("quit")
    def quit(self) -> None:
        """qmp.c qmp_quit: -no-shutdown no longer applies; exit after SHUTDOWN."""
        self.machine.no_shutdown = False
        self.machine.request_shutdown("host-qmp")

    @qmp_command("inject-nmi")
    def inject_nmi(self) -> None:
        """cpus.c qmp_inject_nmi -> hw/core/nmi.c nmi_monitor_handle: the objects that
        implement TYPE_NMI handle it (a PC machine: every x86 CPU takes an NMI, nothing
        visible on QMP); without one, QERR_UNSUPPORTED."""
        if not self.machine.board.nmi:
            raise GenericError("this feature or command is not currently supported")
        self.machine.nmi()

    @qmp_command("watchdog-set-action")
    def watchdog_set_action(self, action: str) -> None:
        """hw/watchdog/watchdog.c qmp_watchdog_set_action."""
        self.machine.watchdog_action = action

    # -- identity ------------------------------------------------------------------------

    @qmp_command("query-name")
    def query_name(self) -> dict[str, Any]:
        """qmp.c qmp_query_name: `{}` without -name."""
        name = self.machine.options.name
        return {} if name is None else {"name": name}

    @qmp_command("query-uuid")
    def query_uuid(self) -> dict[str, Any]:
        """qmp.c qmp_query_uuid: lower-case whatever case -uuid was given in."""
        return {"UUID": self.machine.options.uuid.lower()}

    @qmp_command("query-version")
    def query_version(self) -> dict[str, Any]:
        """qmp.c qmp_query_version (the version of the recorded binary)."""
        version = self.machine.catalog.version()
        version["package"] = self.machine.options.package
        return version

    @qmp_command("query-kvm")
    def query_kvm(self) -> dict[str, Any]:
        """qmp.c qmp_query_kvm: `present` is a build property, `enabled` the accel in use."""
        return {"enabled": self.machine.options.accel == "kvm",
                "present": self.machine.catalog.kvm_present()}

    @qmp_command("query-target")
    def query_target(self) -> dict[str, Any]:
        return self.machine.catalog.target()

    @qmp_command("query-vm-generation-id")
    def query_vm_generation_id(self) -> dict[str, Any]:
        """hw/acpi/vmgenid.c qmp_query_vm_generation_id."""
        guid = self.machine.options.vmgenid_guid
        if guid is None:
            raise GenericError("VM Generation ID device not found")
        return {"guid": guid}

    @qmp_command("query-iothreads")
    def query_iothreads(self) -> list[dict[str, Any]]:
        """iothread.c qmp_query_iothreads (-object iothread,id=...), in creation order.
        The emulator runs no threads: each reports the process's own id, which is
        what pinning it would act on."""
        pid = self.machine.options.pid
        return [{"id": ident, "thread-id": pid, "poll-max-ns": max_ns, "poll-grow": grow,
                 "poll-shrink": shrink}
                for ident, max_ns, grow, shrink in self.machine.options.iothreads]

    # -- catalogue ------------------------------------------------------------------------

    @qmp_command("query-machines")
    def query_machines(self) -> list[dict[str, Any]]:
        return self.machine.catalog.machines()

    @qmp_command("query-cpu-definitions")
    def query_cpu_definitions(self) -> list[dict[str, Any]]:
        """The recorded list for the accelerator in use (unavailable features differ)."""
        return self.machine.catalog.cpu_definitions(self.machine.options.accel)

    @qmp_command("query-cpu-model-expansion")
    def query_cpu_model_expansion(self, type: str, model: dict[str, Any]) -> dict[str, Any]:
        """target/i386/cpu.c arch_query_cpu_model_expansion (devices.cpus): a KVM
        machine answers what the KVM probe recorded for the same arguments, anything
        else is the TCG binary's expansion with `props` applied."""
        from devices.cpus import expand_cpu_model

        catalog = self.machine.catalog
        if self.machine.options.accel == "kvm":
            wanted = {"type": type, "model": model}
            for arguments, recorded in catalog.cpu_model_expansions("kvm"):
                if arguments == wanted:
                    recorded["model"]["props"] = insertion_for_wire_order(
                        recorded["model"]["props"])
                    return recorded
        reply = expand_cpu_model(catalog.cpu_model_expansion, type, model)
        reply["model"]["props"] = insertion_for_wire_order(reply["model"]["props"])
        return reply

    @qmp_command("query-command-line-options")
    def query_command_line_options(self, option: str | None = None) -> list[dict[str, Any]]:
        """util/qemu-config.c qmp_query_command_line_options."""
        options = self.machine.catalog.command_line_options()
        if option is None:
            return options
        chosen = [o for o in options if o["option"] == option]
        if not chosen:
            raise GenericError(f"invalid option name: {option}")
        return chosen

    # -- tracing ----------------------------------------------------------------------

    @qmp_command("trace-event-get-state")
    def trace_event_get_state(self, name: str, vcpu: int | None = None) -> list[dict[str, Any]]:
        """trace/qmp.c qmp_trace_event_get_state."""
        return self.trace.get_state(name, vcpu)

    @qmp_command("trace-event-set-state")
    def trace_event_set_state(self, name: str, enable: bool,
                              ignore_unavailable: bool | None = None,
                              vcpu: int | None = None) -> None:
        """trace/qmp.c qmp_trace_event_set_state."""
        self.trace.set_state(name, enable, bool(ignore_unavailable), vcpu)


class MonitorCommands:
    """Commands that act on the monitor that runs them (negotiation, fds, HMP
    passthrough): the dispatcher binds one instance to each monitor's session."""

    def __init__(self, machine: Machine, session: MonitorSession) -> None:
        self.machine = machine
        self.session = session

    @qmp_command("qmp_capabilities")
    def qmp_capabilities(self) -> None:
        """monitor.c qmp_qmp_capabilities: leaves capabilities negotiation mode once."""
        if self.session.negotiated:
            raise CommandNotFound("Capabilities negotiation is already complete, command ignored")
        self.session.negotiated = True

    @qmp_command("getfd")
    def getfd(self, fdname: str) -> None:
        """monitor.c qmp_getfd."""
        self.session.fds.getfd(fdname)

    @qmp_command("closefd")
    def closefd(self, fdname: str) -> None:
        """monitor.c qmp_closefd."""
        self.session.fds.closefd(fdname)

    @qmp_command("add-fd")
    def add_fd(self, fdset_id: int | None = None, opaque: str | None = None) -> dict[str, Any]:
        """monitor.c qmp_add_fd."""
        fd = self.session.fds.take_received()
        if fd is None:
            raise GenericError("No file descriptor supplied via SCM_RIGHTS")
        try:
            return self.machine.fdsets.add(fd, fdset_id, opaque)
        except GenericError:
            from vmm.machine.fds import close_quietly

            close_quietly(fd)
            raise

    @qmp_command("remove-fd")
    def remove_fd(self, fdset_id: int, fd: int | None = None) -> None:
        """monitor.c qmp_remove_fd."""
        self.machine.fdsets.remove(fdset_id, fd, running=self.machine.runstate.running,
                                   monitors_connected=self.session.connected_monitors())

    @qmp_command("query-fdsets")
    def query_fdsets(self) -> list[dict[str, Any]]:
        return self.machine.fdsets.query()

    @qmp_command("human-monitor-command")
    def human_monitor_command(self, command_line: str, cpu_index: int | None = None) -> str:
        """monitor.c qmp_human_monitor_command: a throw-away HMP monitor's output."""
        if cpu_index is not None and not 0 <= cpu_index < self.machine.options.smp_cpus:
            raise GenericError("Parameter 'cpu-index' expects a CPU number")
        return self.session.run_hmp(command_line)
