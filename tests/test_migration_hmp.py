"""HMP's migration commands with 2.11's texts [hmp.c hmp_info_migrate,
hmp_info_migrate_capabilities, hmp_info_migrate_parameters,
hmp_info_migrate_cache_size, hmp_migrate, hmp_migrate_set_parameter,
hmp_migrate_set_capability; migration/migration.c migration_global_dump], run
through human-monitor-command on a machine whose transport the test plays."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_migration_commands import Vm


@pytest.fixture
def vm() -> Iterator[Vm]:
    made = Vm()
    yield made
    made.sync.close()


def hmp(vm: Vm, line: str) -> str:
    return str(vm.ok("human-monitor-command", **{"command-line": line})).replace("\r\n", "\n")


def test_info_migrate_idle(vm: Vm) -> None:
    """No status: only the globals line."""
    assert hmp(vm, "info migrate") == (
        "globals: store-global-state=1, only_migratable=0, send-configuration=1, "
        "send-section-footer=1\n")


def test_info_migrate_active(vm: Vm) -> None:
    """Capabilities on one line, then status, times and the RAM counters."""
    assert hmp(vm, "migrate -d tcp:127.0.0.1:4444") == ""
    vm.connect()
    vm.tick(0.05)
    text = hmp(vm, "info migrate")
    lines = text.splitlines()
    assert lines[1].startswith("capabilities: xbzrle: off rdma-pin-all: off ")
    assert lines[1].endswith("x-multifd: off ")
    assert lines[2] == "Migration status: active"
    assert lines[3] == "total time: 50 milliseconds"
    assert lines[4] == "expected downtime: 300 milliseconds"
    assert lines[5] == "setup: 0 milliseconds"
    assert lines[6].startswith("transferred ram: ")
    assert lines[7].startswith("throughput: ") and lines[7].endswith(" mbps")
    assert "total ram: 131592 kbytes" in lines
    assert lines[-2:] == ["dirty sync count: 1", "page size: 4 kbytes"]


def test_info_migrate_failed_shows_the_error(vm: Vm) -> None:
    """`Migration status: failed (<error-desc>)`."""
    vm.run("migrate", uri="tcp:127.0.0.1")
    assert "Migration status: failed (error parsing address '127.0.0.1')\n" in \
        hmp(vm, "info migrate")


def test_migrate_without_d_on_a_monitor_without_terminal(vm: Vm) -> None:
    """hmp_migrate: monitor_suspend fails without a terminal."""
    assert hmp(vm, "migrate tcp:127.0.0.1:4444") == \
        "terminal does not allow synchronous migration, continuing detached\n"


def test_migrate_without_d_suspends_a_terminal_monitor(vm: Vm) -> None:
    """hmp_migrate without -d on a terminal monitor: monitor_suspend, no prompt, what
    the user types waits; hmp_migrate_status_cb checks every second and resumes the
    monitor (the prompt, then the held line runs) once the migration ended (here:
    cancelled from QMP)."""
    from vmm.qmp.monitor import HmpMonitor

    mon = HmpMonitor(vm.sync.vm.hub, name="mon0")
    mon.connect()
    mon.take_output()
    mon.feed(b"migrate tcp:127.0.0.1:4444\rinfo status\r")
    echoed = mon.take_output()  # the line editor's echo, then no prompt
    assert echoed.endswith(b"\r\n") and b"(qemu)" not in echoed
    assert mon.suspended == 1 and mon.held == b"info status\r"
    vm.connect()
    vm.tick(0.5)
    assert mon.take_output() == b""  # no disk: nothing to say, still suspended
    vm.ok("migrate_cancel")
    vm.tick(2)
    assert vm.ok("query-migrate")["status"] == "cancelled"
    resumed = mon.take_output()  # the prompt, the held line's echo, its output
    assert resumed.startswith(b"(qemu) i")
    assert resumed.endswith(b"\r\nVM status: running\r\n(qemu) ")
    assert mon.suspended == 0


def test_info_migrate_capabilities(vm: Vm) -> None:
    hmp(vm, "migrate_set_capability events on")
    text = hmp(vm, "info migrate_capabilities")
    assert text.startswith("xbzrle: off\nrdma-pin-all: off\n")
    assert "events: on\n" in text and text.endswith("x-multifd: off\n")


def test_info_migrate_parameters_after_setting_them(vm: Vm) -> None:
    """Units and quoting of hmp_info_migrate_parameters; max-bandwidth in MiB by
    default (qemu_strtosz_MiB); migrate_set_speed/downtime/cache_size."""
    hmp(vm, "migrate_set_parameter max-bandwidth 64")
    hmp(vm, "migrate_set_parameter block-incremental on")
    hmp(vm, "migrate_set_downtime 1")
    hmp(vm, "migrate_set_cache_size 1M")
    assert hmp(vm, "info migrate_parameters") == (
        "compress-level: 1\ncompress-threads: 8\ndecompress-threads: 2\n"
        "cpu-throttle-initial: 20\ncpu-throttle-increment: 10\ntls-creds: ''\n"
        "tls-hostname: ''\nmax-bandwidth: 67108864 bytes/second\n"
        "downtime-limit: 1000 milliseconds\nx-checkpoint-delay: 200\n"
        "block-incremental: on\nx-multifd-channels: 2\nx-multifd-page-count: 16\n"
        "xbzrle-cache-size: 1048576\n")
    assert hmp(vm, "info migrate_cache_size") == "xbzrel cache size: 1024 kbytes\n"


def test_migrate_set_parameter_errors(vm: Vm) -> None:
    """The string visitor's texts, and the checks of migrate_params_check."""
    assert "Parameter 'compress-level' expects an int64 value or range" in \
        hmp(vm, "migrate_set_parameter compress-level x")
    assert "Invalid size 12Q" in hmp(vm, "migrate_set_parameter max-bandwidth 12Q")
    assert "Parameter 'block-incremental' expects boolean" in \
        hmp(vm, "migrate_set_parameter block-incremental maybe")
    assert "Parameter 'compress_level' expects is invalid, it should be in the range of " \
        "0 to 9" in hmp(vm, "migrate_set_parameter compress-level 12")


def test_migrate_cancel_and_continue(vm: Vm) -> None:
    """migrate_cancel prints nothing; migrate_continue reports the state error."""
    assert hmp(vm, "migrate_cancel") == ""
    assert "Migration not in expected state: none" in \
        hmp(vm, "migrate_continue pre-switchover")
