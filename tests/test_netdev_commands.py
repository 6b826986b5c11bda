"""netdev_add/netdev_del/set_link/query-rx-filter and their HMP commands
(devices.md §5; QEMU 2.11 net/net.c qmp_netdev_add, net_client_init,
net_client_init1, qmp_netdev_del, qmp_set_link, qmp_query_rx_filter,
hmp_info_network; util/qemu-option.c qemu_opts_create; qapi/opts-visitor.c;
net/hub.c; net/slirp.c; net/socket.c; net/tap.c; net/l2tpv3.c; net/vhost-user.c)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import SyncVm


@pytest.fixture
def vm() -> Any:
    machine = SyncVm(["-machine", "pc", "-nodefaults"])
    yield machine
    machine.vm.close()


def run(vm: SyncVm, cmd: str, **args: Any) -> Any:
    reply = vm.execute({"execute": cmd, "arguments": args})
    assert reply is not None
    return reply


def error(vm: SyncVm, cmd: str, **args: Any) -> tuple[str, str]:
    reply = run(vm, cmd, **args)
    assert "error" in reply, reply
    return reply["error"]["class"], reply["error"]["desc"]


def ok(vm: SyncVm, cmd: str, **args: Any) -> Any:
    reply = run(vm, cmd, **args)
    assert "return" in reply, reply
    return reply["return"]


def hmp(vm: SyncVm, line: str) -> str:
    return str(ok(vm, "human-monitor-command", **{"command-line": line}))


def generic(text: str) -> tuple[str, str]:
    return ("GenericError", text)


def test_bad_id(vm: SyncVm) -> None:
    """devices.md §5.1 [qemu_opts_create: id_wellformed]."""
    assert error(vm, "netdev_add", type="user", id="1bad") == \
        generic("Parameter 'id' expects an identifier")


def test_duplicate_id(vm: SyncVm) -> None:
    """devices.md §5.1 [qemu_opts_create]."""
    ok(vm, "netdev_add", type="user", id="n0")
    assert error(vm, "netdev_add", type="hubport", id="n0", hubid=0) == \
        generic("Duplicate ID 'n0' for netdev")


def test_missing_type(vm: SyncVm) -> None:
    """devices.md §5.1 [opts-visitor.c lookup_scalar]."""
    assert error(vm, "netdev_add", id="n0") == generic("Parameter 'type' is missing")


def test_missing_id(vm: SyncVm) -> None:
    """netdev_add is gen:false: no id reaches the OptsVisitor as a missing member."""
    assert error(vm, "netdev_add", type="user") == generic("Parameter 'id' is missing")


def test_unknown_type(vm: SyncVm) -> None:
    """devices.md §5.1 [visit_type_NetClientDriver]."""
    assert error(vm, "netdev_add", type="carrier-pigeon", id="n0") == \
        generic("Invalid parameter 'carrier-pigeon'")


@pytest.mark.parametrize("kind", ["nic", "dump", "vde", "none"])
def test_not_a_netdev_backend(vm: SyncVm, kind: str) -> None:
    """devices.md §5.1 [net_client_init1: NIC, DUMP or no init function in this build]."""
    assert error(vm, "netdev_add", type=kind, id="n0") == \
        generic("Parameter 'type' expects a netdev backend type")


def test_visitor_before_backend_check(vm: SyncVm) -> None:
    """net_client_init visits the options before net_client_init1 looks at the type:
    netmap's mandatory ifname is missing first."""
    assert error(vm, "netdev_add", type="netmap", id="n0") == \
        generic("Parameter 'ifname' is missing")
    assert error(vm, "netdev_add", type="netmap", id="n0", ifname="x") == \
        generic("Parameter 'type' expects a netdev backend type")


def test_unknown_option(vm: SyncVm) -> None:
    """devices.md §5.1 [opts_check_struct]."""
    assert error(vm, "netdev_add", type="user", id="n0", colour="red") == \
        generic("Invalid parameter 'colour'")


def test_option_types_as_command_line(vm: SyncVm) -> None:
    """devices.md §5.1: numbers and booleans become option text; opts_type_bool's
    words."""
    assert error(vm, "netdev_add", type="user", id="n0", restrict="maybe") == \
        generic("Parameter 'restrict' expects on|yes|y|off|no|n")
    ok(vm, "netdev_add", type="user", id="n1", restrict=True)
    ok(vm, "netdev_add", type="hubport", id="h0", hubid=3)
    assert error(vm, "netdev_add", type="hubport", id="h1", hubid="x") == \
        generic("Parameter 'hubid' expects an int64 value")


def test_init_failed_without_message(vm: SyncVm) -> None:
    """devices.md §5.1: l2tpv3 only prints its reason [net/l2tpv3.c net_init_l2tpv3],
    so net_client_init1 says QERR_DEVICE_INIT_FAILED."""
    assert error(vm, "netdev_add", type="l2tpv3", id="l0", src="127.0.0.1",
                 dst="127.0.0.1", udp=True, txsession=1) == \
        generic("Device 'l2tpv3' could not be initialized")


def test_failed_add_frees_the_id(vm: SyncVm) -> None:
    """qmp_netdev_add deletes the opts of a failed add."""
    error(vm, "netdev_add", type="socket", id="s0")
    ok(vm, "netdev_add", type="user", id="s0")


def test_del_not_found(vm: SyncVm) -> None:
    """devices.md §5.2: DeviceNotFound."""
    assert error(vm, "netdev_del", id="nope") == ("DeviceNotFound", "Device 'nope' not found")


def test_del_frees_the_id(vm: SyncVm) -> None:
    """devices.md §5.2 (verified): a second netdev_del is not found; the id is free."""
    ok(vm, "netdev_add", type="user", id="u1")
    ok(vm, "netdev_del", id="u1")
    assert error(vm, "netdev_del", id="u1") == ("DeviceNotFound", "Device 'u1' not found")
    ok(vm, "netdev_add", type="user", id="u1")


def test_set_link_not_found(vm: SyncVm) -> None:
    """devices.md §5.3."""
    assert error(vm, "set_link", name="nope", up=False) == \
        ("DeviceNotFound", "Device 'nope' not found")


def test_set_link_on_netdev_and_nic(vm: SyncVm) -> None:
    """devices.md §5.3: naming a netdev sets its link and its NIC peer's; naming the
    NIC leaves the netdev's."""
    ok(vm, "netdev_add", type="user", id="u1")
    nic = vm.vm.net.attach_nic(model="virtio-net-pci", typename="virtio-net-pci",
                               netdev="u1", device_id="net0",
                               qom_path="/machine/peripheral/net0", rx_filter=True)
    backend = vm.vm.net.find("u1")
    assert backend is not None
    ok(vm, "set_link", name="u1", up=False)
    assert backend.link_down and nic.client.link_down
    ok(vm, "set_link", name="net0", up=True)
    assert not nic.client.link_down and backend.link_down


def test_nic_netdev_in_use(vm: SyncVm) -> None:
    """hw/core/qdev-properties-system.c set_netdev: -ENOENT and -EEXIST texts."""
    ok(vm, "netdev_add", type="user", id="u1")
    net = vm.vm.net
    net.attach_nic(model="e1000", typename="e1000", netdev="u1", device_id=None,
                   qom_path="/machine/peripheral-anon/device[0]")
    with pytest.raises(Exception) as taken:
        net.attach_nic(model="e1000", typename="e1000", netdev="u1", device_id=None,
                       qom_path="/machine/peripheral-anon/device[1]")
    assert str(taken.value) == "Property 'e1000.netdev' can't take value 'u1', it's in use"
    with pytest.raises(Exception) as missing:
        net.attach_nic(model="e1000", typename="e1000", netdev="zz", device_id=None,
                       qom_path="/machine/peripheral-anon/device[2]")
    assert str(missing.value) == "Property 'e1000.netdev' can't find value 'zz'"


def test_query_rx_filter(vm: SyncVm) -> None:
    """devices.md §5.4 (verified): virtio-net only, default MACs counting up,
    broadcast-allowed inverted; the three name errors."""
    ok(vm, "netdev_add", type="user", id="u1")
    net = vm.vm.net
    net.attach_nic(model="e1000", typename="e1000", netdev=None, device_id="e0",
                   qom_path="/machine/peripheral/e0")
    net.attach_nic(model="virtio-net-pci", typename="virtio-net-pci", netdev="u1",
                   device_id="net0", qom_path="/machine/peripheral/net0", rx_filter=True)
    assert ok(vm, "query-rx-filter") == [{
        "name": "net0", "promiscuous": True, "multicast": "normal", "unicast": "normal",
        "vlan": "all", "broadcast-allowed": False, "multicast-overflow": False,
        "unicast-overflow": False, "main-mac": "52:54:00:12:34:57", "vlan-table": [],
        "unicast-table": [], "multicast-table": []}]
    assert error(vm, "query-rx-filter", name="u1") == generic("net client(u1) isn't a NIC")
    assert error(vm, "query-rx-filter", name="e0") == \
        generic("net client(e0) doesn't support rx-filter querying")
    assert error(vm, "query-rx-filter", name="zz") == generic("invalid net client name: zz")


def test_nic_rx_filter_changed_once_until_queried(vm: SyncVm) -> None:
    """devices.md §5.4 [hw/net/virtio-net.c rxfilter_notify]: one event, then none
    until query-rx-filter names the NIC."""
    nic = vm.vm.net.attach_nic(model="virtio-net-pci", typename="virtio-net-pci",
                               netdev=None, device_id="net0",
                               qom_path="/machine/peripheral/net0", rx_filter=True)
    vm.events.clear()
    vm.vm.net.rx_filter_changed(nic)
    vm.vm.net.rx_filter_changed(nic)
    names = [e.name if hasattr(e, "name") else e["event"] for e in vm.events]
    assert names == ["NIC_RX_FILTER_CHANGED"]
    ok(vm, "query-rx-filter", name="net0")
    vm.vm.net.rx_filter_changed(nic)
    assert len(vm.events) == 2


def test_socket_listen_is_real(vm: SyncVm) -> None:
    """net/socket.c net_socket_listen_init: a real listening socket; info network shows
    the client; a taken port is refused with bind's errno."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ok(vm, "netdev_add", type="socket", id="s0", listen=f"127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port)):
        pass
    assert error(vm, "netdev_add", type="socket", id="s1", listen=f"127.0.0.1:{port}") == \
        generic("can't bind ip=127.0.0.1 to socket: Address already in use")
    assert hmp(vm, "info network") == "s0: index=0,type=socket,\r\n"


def test_socket_needs_one_mode(vm: SyncVm) -> None:
    """net/socket.c net_init_socket."""
    assert error(vm, "netdev_add", type="socket", id="s0") == \
        generic("exactly one of listen=, connect=, mcast= or udp= is required")


def test_socket_bad_host_port(vm: SyncVm) -> None:
    """net/net.c parse_host_port."""
    assert error(vm, "netdev_add", type="socket", id="s0", listen="nocolon") == \
        generic("host address 'nocolon' doesn't contain ':' separating host from port")


def test_tap_fd_passing(vm: SyncVm) -> None:
    """net/tap.c net_init_tap: fd= names a getfd descriptor of the current monitor
    (monitor.c monitor_get_fd), which the tap then owns."""
    r, w = os.pipe()
    try:
        vm.session.fds.named["tapfd"] = r
        ok(vm, "netdev_add", type="tap", id="t0", fd="tapfd")
        assert "tapfd" not in vm.session.fds.named
        assert hmp(vm, "info network") == f"t0: index=0,type=tap,fd={r}\r\n"
        ok(vm, "netdev_del", id="t0")
        with pytest.raises(OSError):
            os.fstat(r)
    finally:
        os.close(w)


def test_tap_fd_not_found(vm: SyncVm) -> None:
    """monitor.c monitor_get_fd."""
    assert error(vm, "netdev_add", type="tap", id="t0", fd="nope") == \
        generic("File descriptor named 'nope' has not been found")


def test_tap_fd_with_ifname(vm: SyncVm) -> None:
    """net/tap.c net_init_tap."""
    assert error(vm, "netdev_add", type="tap", id="t0", fd="x", ifname="tap0") == \
        generic("ifname=, script=, downscript=, vnet_hdr=, helper=, queues=, fds=, and "
                "vhostfds= are invalid with fd=")


def test_tap_cannot_configure(vm: SyncVm) -> None:
    """tap-linux.c tap_open: the emulator never creates host interfaces, so it answers
    as QEMU without CAP_NET_ADMIN (or without /dev/net/tun)."""
    kind, text = error(vm, "netdev_add", type="tap", id="t0", ifname="tap9")
    assert kind == "GenericError"
    assert text in ("could not configure /dev/net/tun (tap9): Operation not permitted",
                    "could not open /dev/net/tun: No such file or directory")


def test_bridge_helper_failed(vm: SyncVm, tmp_path: Path) -> None:
    """net/tap.c net_bridge_run_helper: a helper that cannot run."""
    assert error(vm, "netdev_add", type="bridge", id="b0",
                 helper=str(tmp_path / "no-helper")) == generic("bridge helper failed")


def test_vhost_user_chardev_checks(vm: SyncVm, tmp_path: Path) -> None:
    """net/vhost-user.c net_vhost_claim_chardev."""
    assert error(vm, "netdev_add", type="vhost-user", id="v0", chardev="c0") == \
        generic('chardev "c0" not found')
    ok(vm, "chardev-add", id="r0", backend={"type": "ringbuf", "data": {}})
    assert error(vm, "netdev_add", type="vhost-user", id="v0", chardev="r0") == \
        generic('chardev "r0" is not reconnectable')
    ok(vm, "chardev-add", id="t0", backend={"type": "socket", "data": {
        "addr": {"type": "inet", "data": {"host": "127.0.0.1", "port": "0"}}}})
    assert error(vm, "netdev_add", type="vhost-user", id="v0", chardev="t0") == \
        generic('chardev "t0" does not support FD passing')


def test_user_address_checks(vm: SyncVm) -> None:
    """net/slirp.c net_slirp_init."""
    assert error(vm, "netdev_add", type="user", id="u0", host="10.0.3.2") == \
        generic("Host doesn't belong to network")
    assert error(vm, "netdev_add", type="user", id="u0", dns="10.0.2.2") == \
        generic("DNS must be different from host")
    assert error(vm, "netdev_add", type="user", id="u0", net="10.0.2.0/40") == \
        generic("Invalid netmask provided (must be in range 4-32)")
    assert error(vm, "netdev_add", type="user", id="u0", ipv4=False, ipv6=False) == \
        generic("IPv4 and IPv6 disabled")


def test_hostfwd_rules(vm: SyncVm) -> None:
    """net/slirp.c slirp_hostfwd (a real listening socket), hmp_hostfwd_add/remove,
    hmp_info_usernet."""
    assert error(vm, "netdev_add", type="user", id="u0", hostfwd="tcp:1.2.3:1-:22") == \
        generic("Invalid host forwarding rule 'tcp:1.2.3:1-:22' (Bad host address)")
    ok(vm, "netdev_add", type="user", id="u0", hostfwd="tcp:127.0.0.1:0-:22")
    assert hmp(vm, "hostfwd_add tcp:127.0.0.1:0-:2222") == ""
    assert hmp(vm, "hostfwd_add bogus") == \
        "Invalid host forwarding rule 'bogus' (No : separators)\r\n"
    lines = hmp(vm, "info usernet").split("\r\n")
    assert lines[0] == "VLAN -1 (u0):"
    assert lines[1] == ("  Protocol[State]    FD  Source Address  Port   Dest. Address  "
                        "Port RecvQ SendQ")
    assert lines[2].startswith("  TCP[HOST_FORWARD]")
    assert lines[2].endswith("      10.0.2.15  2222     0     0")
    assert hmp(vm, "hostfwd_remove tcp:127.0.0.1:1") == \
        "host forwarding rule for tcp:127.0.0.1:1 not found\r\n"
    assert hmp(vm, "hostfwd_remove nonsense") == "invalid format\r\n"


def test_hostfwd_without_user_network(vm: SyncVm) -> None:
    """net/slirp.c slirp_lookup."""
    assert hmp(vm, "hostfwd_add tcp::5555-:22") == "user mode network stack not in use\r\n"


def test_info_network_hub_and_nic(vm: SyncVm) -> None:
    """net/net.c hmp_info_network and net/hub.c net_hub_info."""
    ok(vm, "netdev_add", type="hubport", id="h0", hubid=0)
    ok(vm, "netdev_add", type="user", id="u1")
    vm.vm.net.attach_nic(model="e1000", typename="e1000", netdev="u1", device_id="e0",
                         qom_path="/machine/peripheral/e0")
    assert hmp(vm, "info network") == (
        "hub 0\r\n \\ h0\r\n"
        "e0: index=0,type=nic,model=e1000,macaddr=52:54:00:12:34:56\r\n"
        " \\ u1: index=0,type=user,net=10.0.2.0,restrict=off\r\n")


def test_hmp_netdev_add_and_del(vm: SyncVm) -> None:
    """hmp.c hmp_netdev_add/hmp_netdev_del: QMP's texts."""
    assert hmp(vm, "netdev_add user,id=n0") == ""
    assert hmp(vm, "netdev_add user,id=n0") == "Duplicate ID 'n0' for netdev\r\n"
    assert hmp(vm, "netdev_del n0") == ""
    assert hmp(vm, "set_link n0 off") == "Device 'n0' not found\r\n"


def test_command_line_netdev_duplicate(vm: SyncVm) -> None:
    """-netdev ids share netdev_add's QemuOpts list."""
    machine = SyncVm(["-machine", "none", "-nodefaults", "-netdev", "user,id=n0"])
    try:
        assert error(machine, "netdev_add", type="user", id="n0") == \
            generic("Duplicate ID 'n0' for netdev")
        ok(machine, "netdev_del", id="n0")
    finally:
        machine.vm.close()
