"""Migration commands on one machine, with the transport played by the test.

Each QEMU 2.11 error text of `../shared/reference/migration.md` §4–§7 in its own
test [migration/migration.c qmp_migrate, qmp_migrate_set_capabilities,
migrate_caps_check, migrate_params_check, qmp_migrate_set_downtime,
qmp_migrate_start_postcopy, qmp_migrate_continue, qmp_migrate_incoming,
qemu_start_incoming_migration; util/qemu-sockets.c inet_parse; monitor.c
qmp_client_migrate_info], plus the replies and quirks of §3–§7. The machine is
strict (every reply and event is checked against the schema); the edge is
`migration.host.RecordingEdge`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from migration.host import RecordingChannel, RecordingEdge
from tests import emulator


class Vm:
    def __init__(self, *argv: str) -> None:
        self.sync = emulator.SyncVm(["--emu-strict", *argv])
        self.edge = RecordingEdge()
        self.sync.vm.migration.edge = self.edge
        self.sync.events.clear()  # the start-up RESUME

    def run(self, name: str, **arguments: Any) -> Any:
        req: dict[str, Any] = {"execute": name}
        if arguments:
            req["arguments"] = arguments
        reply = self.sync.execute(req)
        assert reply is not None
        return reply

    def ok(self, name: str, **arguments: Any) -> Any:
        reply = self.run(name, **arguments)
        assert "return" in reply, reply
        return reply["return"]

    def error(self, name: str, **arguments: Any) -> str:
        reply = self.run(name, **arguments)
        assert reply["error"]["class"] == "GenericError", reply
        return str(reply["error"]["desc"])

    def events(self) -> list[tuple[str, Any]]:
        out = [(e.name, e.data) for e in self.sync.events]
        self.sync.events.clear()
        return out

    def caps(self, **states: bool) -> None:
        self.ok("migrate-set-capabilities", capabilities=[
            {"capability": k.replace("_", "-"), "state": v} for k, v in states.items()])

    def connect(self) -> RecordingChannel:
        _, _, end = self.edge.outgoing[-1]
        channel = RecordingChannel()
        end.connected(channel)
        return channel

    def tick(self, seconds: float) -> None:
        self.sync.tick(seconds)


@pytest.fixture
def vm() -> Iterator[Vm]:
    made = Vm()
    yield made
    made.sync.close()


def status(vm: Vm) -> str:
    return str(vm.ok("query-status")["status"])


# -- §3 query-migrate ---------------------------------------------------------------------

def test_query_migrate_before_any_migration_is_empty(vm: Vm) -> None:
    """§3: state none -> `{}`."""
    assert vm.ok("query-migrate") == {}


def test_query_migrate_in_setup_has_status_only(vm: Vm) -> None:
    """§3 (verified): `{"status": "setup"}` while connecting."""
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    assert vm.ok("query-migrate") == {"status": "setup"}


def test_query_migrate_active_has_the_stats(vm: Vm) -> None:
    """§3: active: status, total-time, expected-downtime (the downtime limit at
    first), setup-time and ram; RAM total as in the verified sample."""
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.connect()
    vm.tick(0.05)
    info = vm.ok("query-migrate")
    assert list(info) == ["status", "total-time", "expected-downtime", "setup-time", "ram"] \
        or set(info) == {"status", "total-time", "expected-downtime", "setup-time", "ram"}
    assert info["status"] == "active" and info["expected-downtime"] == 300
    assert info["ram"]["total"] == 134750208 and info["ram"]["page-size"] == 4096
    assert info["ram"]["dirty-sync-count"] == 1 and info["ram"]["skipped"] == 0


def test_xbzrle_adds_cache_stats(vm: Vm) -> None:
    """§3/§4.1: the xbzrle capability adds `xbzrle-cache` with the cache size."""
    vm.caps(xbzrle=True)
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.connect()
    vm.tick(0.05)
    cache = vm.ok("query-migrate")["xbzrle-cache"]
    assert cache["cache-size"] == 67108864
    assert set(cache) == {"cache-size", "bytes", "pages", "cache-miss", "cache-miss-rate",
                          "overflow"}


def test_auto_converge_throttles_a_guest_that_does_not_converge() -> None:
    """ram.c migration_bitmap_sync / mig_throttle_guest_down: a guest dirtying
    faster than the link is throttled (cpu-throttle-initial, then +increment), and
    cpu-throttle-percentage appears."""
    vm = Vm("--emu-behaviour=migration-dirty-rate=20000")
    vm.caps(auto_converge=True)
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.connect()
    seen = []
    for _ in range(40):
        vm.tick(0.5)
        info = vm.ok("query-migrate")
        if "cpu-throttle-percentage" in info:
            seen.append(info["cpu-throttle-percentage"])
        if info["status"] != "active":
            break
    assert seen and seen[0] == 20
    assert sorted(set(seen)) == sorted(set(seen), key=seen.index)  # never goes down


def test_a_guest_faster_than_the_link_never_converges() -> None:
    """Non-convergence: without auto-converge the migration stays active, pass
    after pass."""
    vm = Vm("--emu-behaviour=migration-dirty-rate=20000")
    vm.caps(events=True)
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.connect()
    vm.tick(30)
    info = vm.ok("query-migrate")
    assert info["status"] == "active" and info["ram"]["dirty-sync-count"] > 3
    assert info["ram"]["dirty-pages-rate"] > 0
    assert status(vm) == "running"


def test_max_bandwidth_sets_the_pace() -> None:
    """§5.2: max-bandwidth takes effect immediately; a slower link takes longer."""
    fast, slow = Vm("--emu-guest=os"), Vm("--emu-guest=os")
    slow.ok("migrate_set_speed", value=1024 * 1024)
    for v in (fast, slow):
        v.ok("migrate", uri="tcp:127.0.0.1:4444")
        v.connect()
        v.tick(1)
    assert fast.ok("query-migrate")["ram"]["transferred"] > \
        4 * slow.ok("query-migrate")["ram"]["transferred"]


# -- §4 capabilities -----------------------------------------------------------------------

def test_capabilities_listed_in_order_all_off(vm: Vm) -> None:
    """§4.1 (verified): 13 capabilities, all false."""
    assert vm.ok("query-migrate-capabilities") == [
        {"capability": c, "state": False} for c in (
            "xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress", "events",
            "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
            "pause-before-switchover", "x-multifd")]


def test_set_capabilities_refused_during_migration(vm: Vm) -> None:
    """§4.2 1."""
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    assert vm.error("migrate-set-capabilities", capabilities=[
        {"capability": "xbzrle", "state": True}]) == "There's a migration process in progress"


def test_postcopy_with_compress_is_refused_but_stays_applied(vm: Vm) -> None:
    """§4.2 2 and its quirk (verified): the values stay applied."""
    assert vm.error("migrate-set-capabilities", capabilities=[
        {"capability": "postcopy-ram", "state": True},
        {"capability": "compress", "state": True}]) == \
        "Postcopy is not currently compatible with compression"
    caps = {c["capability"]: c["state"] for c in vm.ok("query-migrate-capabilities")}
    assert caps["postcopy-ram"] and caps["compress"]


def test_unknown_capability(vm: Vm) -> None:
    """§4.2 3."""
    assert vm.error("migrate-set-capabilities", capabilities=[
        {"capability": "nosuch", "state": True}]) == "Invalid parameter 'nosuch'"


def test_events_capability_gates_migration_events(vm: Vm) -> None:
    """§2: MIGRATION events only with the `events` capability."""
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    assert vm.events() == []


# -- §5 parameters -------------------------------------------------------------------------

def test_parameter_defaults(vm: Vm) -> None:
    """§5.1 (verified)."""
    assert vm.ok("query-migrate-parameters") == {
        "compress-level": 1, "compress-threads": 8, "decompress-threads": 2,
        "cpu-throttle-initial": 20, "cpu-throttle-increment": 10, "tls-creds": "",
        "tls-hostname": "", "max-bandwidth": 33554432, "downtime-limit": 300,
        "x-checkpoint-delay": 200, "block-incremental": False, "x-multifd-channels": 2,
        "x-multifd-page-count": 16, "xbzrle-cache-size": 67108864}
    assert vm.ok("query-migrate-cache-size") == 67108864


@pytest.mark.parametrize(("name", "value", "desc"), [
    ("compress-level", 10, "Parameter 'compress_level' expects is invalid, it should be in "
                           "the range of 0 to 9"),
    ("compress-threads", 0, "Parameter 'compress_threads' expects is invalid, it should be "
                            "in the range of 1 to 255"),
    ("decompress-threads", 256, "Parameter 'decompress_threads' expects is invalid, it "
                                "should be in the range of 1 to 255"),
    ("cpu-throttle-initial", 100, "Parameter 'cpu_throttle_initial' expects an integer in "
                                  "the range of 1 to 99"),
    ("cpu-throttle-increment", 0, "Parameter 'cpu_throttle_increment' expects an integer "
                                  "in the range of 1 to 99"),
    ("max-bandwidth", -1, "Parameter 'max_bandwidth' expects an integer in the range of 0 "
                          "to 18446744073709551615 bytes/second"),
    ("downtime-limit", 2000001, "Parameter 'downtime_limit' expects an integer in the "
                                "range of 0 to 2000000 milliseconds"),
    ("x-checkpoint-delay", -1, "Parameter 'x_checkpoint_delay' expects is invalid, it "
                               "should be positive"),
    ("x-multifd-channels", 0, "Parameter 'multifd_channels' expects is invalid, it should "
                              "be in the range of 1 to 255"),
    ("x-multifd-page-count", 10001, "Parameter 'multifd_page_count' expects is invalid, "
                                    "it should be in the range of 1 to 10000"),
    ("xbzrle-cache-size", 4097, "Parameter 'xbzrle_cache_size' expects is invalid, it "
                                "should be bigger than target page size and a power of two"),
])
def test_parameter_range_errors(vm: Vm, name: str, value: int, desc: str) -> None:
    """§5.2: migrate_params_check's texts; nothing is applied on error."""
    before = vm.ok("query-migrate-parameters")
    assert vm.error("migrate-set-parameters", **{name: value, "compress-level": 2}
                    if name != "compress-level" else {name: value}) == desc
    assert vm.ok("query-migrate-parameters") == before


def test_parameters_change_during_migration_and_tls_null(vm: Vm) -> None:
    """§5.2: no "in progress" check; tls-creds null is ""."""
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.ok("migrate-set-parameters", **{"tls-creds": None, "downtime-limit": 10})
    params = vm.ok("query-migrate-parameters")
    assert params["tls-creds"] == "" and params["downtime-limit"] == 10


def test_migrate_set_speed_error(vm: Vm) -> None:
    """§5.2 legacy: migrate_set_speed is max-bandwidth."""
    assert vm.error("migrate_set_speed", value=-5) == (
        "Parameter 'max_bandwidth' expects an integer in the range of 0 to "
        "18446744073709551615 bytes/second")
    vm.ok("migrate_set_speed", value=1000)
    assert vm.ok("query-migrate-parameters")["max-bandwidth"] == 1000


def test_migrate_set_downtime_error_and_seconds(vm: Vm) -> None:
    """§5.2 legacy: seconds, checked 0..2000 first."""
    assert vm.error("migrate_set_downtime", value=2001) == (
        "Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds")
    vm.ok("migrate_set_downtime", value=0.5)
    assert vm.ok("query-migrate-parameters")["downtime-limit"] == 500


def test_migrate_set_cache_size_error(vm: Vm) -> None:
    """§5.2 legacy: migrate-set-cache-size is xbzrle-cache-size."""
    assert vm.error("migrate-set-cache-size", value=1000) == (
        "Parameter 'xbzrle_cache_size' expects is invalid, it should be bigger than "
        "target page size and a power of two")
    vm.ok("migrate-set-cache-size", value=1 << 20)
    assert vm.ok("query-migrate-cache-size") == 1 << 20


def test_cache_size_of_2_63_wraps_in_its_int64_reply(vm: Vm) -> None:
    """migrate-set-parameters takes xbzrle-cache-size as a size (uint64): 2^63 is a
    power of two above the page size, accepted; qmp_query_migrate_cache_size returns
    migrate_xbzrle_cache_size()'s int64_t, so it wraps negative (migration/migration.c)
    and the reply still conforms (a fuzzing run found the emulator answering 2^63)."""
    vm.ok("migrate-set-parameters", **{"xbzrle-cache-size": 1 << 63})
    assert vm.ok("query-migrate-parameters")["xbzrle-cache-size"] == 1 << 63
    assert vm.ok("query-migrate-cache-size") == -(1 << 63)
    vm.ok("migrate-set-capabilities", capabilities=[
        {"capability": "xbzrle", "state": True}])
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.ok("query-migrate")


# -- §6 migrate and friends ----------------------------------------------------------------

def test_migrate_while_one_runs(vm: Vm) -> None:
    """§6.1 1."""
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    assert vm.error("migrate", uri="tcp:127.0.0.1:4444") == \
        "There's a migration process in progress"


def test_migrate_while_waiting_for_incoming() -> None:
    """§6.1 2."""
    vm = Vm("-incoming", "defer")
    assert vm.error("migrate", uri="tcp:127.0.0.1:4444") == \
        "Guest is waiting for an incoming migration"


def test_blk_with_block_capability_is_incompatible(vm: Vm) -> None:
    """§6.1 4."""
    vm.caps(block=True)
    assert vm.error("migrate", uri="tcp:127.0.0.1:4444", blk=True) == \
        "Command options are incompatible with current migration capabilities"


def test_inc_turns_block_flags_on_for_the_migration_only(vm: Vm) -> None:
    """§6.1 4: `inc` sets block and block-incremental until the migration ends."""
    vm.ok("migrate", uri="tcp:127.0.0.1:4444", inc=True)
    caps = {c["capability"]: c["state"] for c in vm.ok("query-migrate-capabilities")}
    assert caps["block"] and vm.ok("query-migrate-parameters")["block-incremental"]
    _, _, end = vm.edge.outgoing[-1]
    end.connect_failed("Failed to connect socket: Connection refused")
    caps = {c["capability"]: c["state"] for c in vm.ok("query-migrate-capabilities")}
    assert not caps["block"] and not vm.ok("query-migrate-parameters")["block-incremental"]


def test_unknown_scheme_fails_without_error_desc(vm: Vm) -> None:
    """§6.1 6: setup, failed, then the error reply; query-migrate has no error-desc."""
    vm.caps(events=True)
    assert vm.error("migrate", uri="ftp:x") == \
        "Parameter 'uri' expects a valid migration protocol"
    assert vm.events() == [("MIGRATION", {"status": "setup"}),
                           ("MIGRATION", {"status": "failed"})]
    assert vm.ok("query-migrate") == {"status": "failed"}


@pytest.mark.parametrize(("uri", "desc"), [
    ("tcp:127.0.0.1", "error parsing address '127.0.0.1'"),
    ("tcp:[::1", "error parsing IPv6 address '[::1'"),
    ("tcp::", "error parsing port in address ':'"),
    # sscanf's %64[^:]: a longer host does not parse; to= is checked even here
    (f"tcp:{'h' * 65}:1", f"error parsing address '{'h' * 65}:1'"),
    ("tcp:h:1,to=x", "error parsing to= argument"),
])
def test_tcp_address_errors(vm: Vm, uri: str, desc: str) -> None:
    """§6.1 (util/qemu-sockets.c inet_parse): synchronous, error-desc set."""
    assert vm.error("migrate", uri=uri) == desc
    assert vm.ok("query-migrate") == {"status": "failed", "error-desc": desc}


def test_unknown_fd_name(vm: Vm) -> None:
    """§6.1 fd: (verified order: setup, failed, the reply)."""
    vm.caps(events=True)
    desc = "File descriptor named 'nosuch' has not been found"
    assert vm.error("migrate", uri="fd:nosuch") == desc
    assert vm.events() == [("MIGRATION", {"status": "setup"}),
                           ("MIGRATION", {"status": "failed"})]
    assert vm.ok("query-migrate") == {"status": "failed", "error-desc": desc}


def test_exec_needs_the_opt_in(vm: Vm) -> None:
    """exec: runs a shell command only with --emu-allow-exec-migration; the error says
    how to enable it."""
    desc = vm.error("migrate", uri="exec:cat > /dev/null")
    assert "--emu-allow-exec-migration" in desc
    assert vm.edge.outgoing == []


def test_migrate_cancel_when_idle_is_silent(vm: Vm) -> None:
    """§6.2: always `{}`, no event when nothing runs."""
    vm.caps(events=True)
    vm.ok("migrate_cancel")
    assert vm.events() == []


def test_cancel_during_setup_then_connect_failure_stays_cancelling(vm: Vm) -> None:
    """§2.1, the 2.11 defect: `cancelling` for good, `migrate` refused. (QEMU crashes
    on query-migrate here; the emulator answers the status alone.)"""
    vm.caps(events=True)
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.ok("migrate_cancel")
    _, _, end = vm.edge.outgoing[-1]
    end.connect_failed("Failed to connect socket: Connection refused")
    vm.tick(1)
    assert vm.events() == [("MIGRATION", {"status": "setup"}),
                           ("MIGRATION", {"status": "cancelling"})]
    assert vm.ok("query-migrate") == {"status": "cancelling"}
    assert vm.error("migrate", uri="tcp:127.0.0.1:4444") == \
        "There's a migration process in progress"


def test_start_postcopy_without_capability(vm: Vm) -> None:
    """§6.3."""
    assert vm.error("migrate-start-postcopy") == (
        "Enable postcopy with migrate_set_capability before the start of migration")


def test_start_postcopy_before_migrate(vm: Vm) -> None:
    """§6.3."""
    vm.caps(postcopy_ram=True)
    assert vm.error("migrate-start-postcopy") == \
        "Postcopy must be started after migration has been started"


def test_migrate_continue_in_another_state(vm: Vm) -> None:
    """§6.4."""
    assert vm.error("migrate-continue", state="pre-switchover") == \
        "Migration not in expected state: none"


def test_failure_after_the_stop_resumes_a_running_source(vm: Vm) -> None:
    """§8.5: a stream error after the final stop: failed, then RESUME, running."""
    vm.caps(events=True, pause_before_switchover=True)
    vm.ok("migrate", uri="tcp:127.0.0.1:4444")
    vm.connect()
    vm.tick(5)
    assert vm.ok("query-migrate")["status"] == "pre-switchover"
    vm.events()
    _, _, end = vm.edge.outgoing[-1]
    end.done(False)
    assert vm.events() == [("MIGRATION", {"status": "failed"}), ("RESUME", None)]
    assert status(vm) == "running"


def test_client_migrate_info_without_spice(vm: Vm) -> None:
    """monitor.c qmp_client_migrate_info: no SPICE server; other protocols."""
    reply = vm.run("client_migrate_info", protocol="spice", hostname="h", port=1)
    assert reply["error"] == {"class": "DeviceNotActive", "desc": "SPICE is not in use"}
    assert vm.error("client_migrate_info", protocol="vnc", hostname="h") == \
        "Parameter 'protocol' expects spice"


# -- §7 the incoming side ------------------------------------------------------------------

def test_migrate_incoming_without_defer(vm: Vm) -> None:
    """§7.1."""
    assert vm.error("migrate-incoming", uri="tcp:127.0.0.1:4444") == \
        "For use with '-incoming defer'"


def test_second_migrate_incoming_still_says_setup() -> None:
    """§7.1 (verified): setup even without the events capability; the second call
    says setup again, then fails."""
    vm = Vm("-incoming", "defer")
    assert status(vm) == "inmigrate"
    vm.ok("migrate-incoming", uri="tcp:127.0.0.1:4444")
    assert vm.events() == [("MIGRATION", {"status": "setup"})]
    assert vm.error("migrate-incoming", uri="tcp:127.0.0.1:4445") == \
        "The incoming migration has already been started"
    assert vm.events() == [("MIGRATION", {"status": "setup"})]


def test_incoming_unknown_protocol() -> None:
    """§7.1."""
    vm = Vm("-incoming", "defer")
    assert vm.error("migrate-incoming", uri="ftp:x") == "unknown migration protocol: ftp:x"


def test_set_capabilities_accepted_while_inmigrate() -> None:
    """§7.2: only the outgoing state is checked."""
    vm = Vm("-incoming", "defer")
    vm.caps(events=True)


def test_cont_and_stop_while_inmigrate_only_change_autostart() -> None:
    """§7.3: `stop` clears autostart, `cont` sets it, no events."""
    vm = Vm("-incoming", "defer")
    vm.ok("stop")
    vm.ok("cont")
    assert vm.events() == [] and status(vm) == "inmigrate"


# -- COLO and Xen's device state -----------------------------------------------------------

def test_colo_lost_heartbeat_without_colo(vm: Vm) -> None:
    """migration/colo-failover.c qmp_x_colo_lost_heartbeat: QERR_FEATURE_DISABLED."""
    assert vm.error("x-colo-lost-heartbeat") == "The feature 'colo' is not enabled"


def test_xen_replication_commands(vm: Vm) -> None:
    """migration/colo.c: no replication driver, so nothing to start, stop or report;
    `failover` only when stopping."""
    assert vm.error("xen-set-replication", enable=True, primary=True, failover=True) == \
        "Parameter 'failover' is only for stopping replication"
    assert vm.ok("xen-set-replication", enable=False, primary=True, failover=True) == {}
    assert vm.ok("query-xen-replication-status") == {"error": False}
    assert vm.ok("xen-colo-do-checkpoint") == {}
    assert vm.ok("xen-set-global-dirty-log", enable=True) == {}


def test_xen_save_and_load_devices_state(vm: Vm, tmp_path) -> None:
    """migration/savevm.c qmp_xen_save_devices_state: STOP, the file, RESUME;
    qmp_xen_load_devices_state refuses a running VM, reads the file, QERR_IO_ERROR
    on what is not a stream, io/channel-file.c's text for a missing file."""
    path = str(tmp_path / "dev")
    assert vm.ok("xen-save-devices-state", filename=path) == {}
    assert vm.events() == [("STOP", None), ("RESUME", None)]
    assert vm.error("xen-load-devices-state", filename=path) == \
        "Cannot update device state while vm is running"
    vm.ok("stop")
    assert vm.ok("xen-load-devices-state", filename=path) == {}
    (tmp_path / "junk").write_bytes(b"junk")
    assert vm.error("xen-load-devices-state", filename=str(tmp_path / "junk")) == \
        "An IO error has occurred"
    assert vm.error("xen-load-devices-state", filename=str(tmp_path / "none")) == \
        f"Unable to open {tmp_path / 'none'}: No such file or directory"
    assert vm.error("xen-save-devices-state", filename="/nonexistent/x") == \
        "Unable to open /nonexistent/x: No such file or directory"
