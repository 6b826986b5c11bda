"""Net clients of one machine: netdevs, hubs and the NICs that peer with them.

Pure model of `devices.net` [net/net.c, net/hub.c, net/slirp.c, hw/net/virtio-net.c]:
no sockets here; what a backend opens on the host (a listening socket, a host
forwarding rule, a passed tap descriptor) it asks `NetHost` for
(`devices.net.hostnet` is the real one). `NetClients` is the machine's list of
net clients in creation order (QEMU's net_clients queue), with the lookup API qdev
calls for a NIC's `netdev=` property (`attach_nic`, "... it's in use") and the
commands' model (set_link, query-rx-filter, info network). The guest's virtio-net
driver (the `nic-driver` behaviour of `devices.net.resolver`) sets the receive filter
when the guest runs, after a reset and for a NIC hot-plugged into a running guest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs

from schema.errors import DeviceNotFound, GenericError
from schema.handlers import SubsystemHooks


class HostHandle(Protocol):
    """Something a backend holds open on the host."""

    def close(self) -> None: ...


class NetHost(Protocol):
    """What backends open on the host [net/socket.c, net/slirp.c, net/tap.c]."""

    def socket_listen(self, host: str, port: int) -> HostHandle: ...

    def socket_connect(self, host: str, port: int) -> HostHandle: ...

    def hostfwd_listen(self, udp: bool, host: str, port: int) -> HostHandle | None: ...

    def adopt_fd(self, fd: int) -> HostHandle: ...

    def run_bridge_helper(self, helper: str, bridge: str) -> HostHandle: ...

    def open_tun(self, ifname: str) -> None: ...

    def l2tpv3_open(self, ipv6: bool, udp: bool, src: str, srcport: str | None, dst: str,
                    dstport: str | None) -> HostHandle: ...


@attrs.define(kw_only=True, eq=False)
class HostFwd:
    """One host forwarding rule of a user network (a listening socket on the host)."""

    udp: bool
    host_addr: str  # "" for INADDR_ANY
    host_port: int
    guest_addr: str
    guest_port: int
    handle: HostHandle | None


@attrs.define(kw_only=True, eq=False)
class NetClient:
    """One NetClientState: a netdev backend, a hub port or a NIC."""

    name: str
    kind: str  # NetClientDriver
    info_str: str = ""
    peer: NetClient | None = None
    link_down: bool = False
    is_netdev: bool = False  # created by -netdev/netdev_add (netdev_del may delete it)
    hub_id: int | None = None  # a hub port: its hub
    handles: list[HostHandle] = attrs.Factory(list)
    hostfwds: list[HostFwd] = attrs.Factory(list)
    dhcp_start: str = "10.0.2.15"
    nic: Nic | None = None

    def close(self) -> None:
        for handle in self.handles:
            handle.close()
        self.handles.clear()
        for rule in self.hostfwds:
            if rule.handle is not None:
                rule.handle.close()
        self.hostfwds.clear()


@attrs.define(kw_only=True, eq=False)
class RxFilter:
    """virtio-net's receive filter state (hw/net/virtio-net.c virtio_net_reset)."""

    promiscuous: bool = True
    allmulti: bool = False
    alluni: bool = False
    nomulti: bool = False
    nouni: bool = False
    nobcast: bool = False
    vlan_filtering: bool = False
    multicast_overflow: bool = False
    unicast_overflow: bool = False
    unicast_table: list[str] = attrs.Factory(list)
    multicast_table: list[str] = attrs.Factory(list)
    vlan_table: list[int] = attrs.Factory(list)


@attrs.define(kw_only=True, eq=False)
class Nic:
    """A NIC's side: its model, MAC, QOM path and (virtio-net) receive filter."""

    client: NetClient
    model: str
    mac: str
    qom_path: str
    device_id: str | None
    rx_filter: RxFilter | None = None  # None: the model cannot be queried
    notify_armed: bool = True  # NIC_RX_FILTER_CHANGED until the next query-rx-filter
    driver_loaded: bool = False  # the guest's driver has set the filter since reset


class EventSink(Protocol):
    def emit(self, name: str, data: dict[str, Any] | None = None) -> Any: ...


def _mac_text(index: int) -> str:
    return f"52:54:00:12:34:{0x56 + index:02x}"


@attrs.define(kw_only=True, eq=False)
class NetClients(SubsystemHooks):
    """The net clients of one machine (net/net.c net_clients) and its hubs."""

    host: NetHost
    events: EventSink
    clients: list[NetClient] = attrs.Factory(list)
    hubs: dict[int, list[NetClient]] = attrs.Factory(dict)  # hub id -> ports, in order
    model_counts: dict[str, int] = attrs.Factory(dict)
    macs_in_use: set[int] = attrs.Factory(set)
    hub_port_counter: dict[int, int] = attrs.Factory(dict)
    on_change: Callable[[], None] = lambda: None
    # a named guest behaviour's current value (the Machine's registry): nic-driver
    behaviour: Callable[[str], Any] = lambda name: None
    running: bool = False
    # the Machine's guest-time timers (vm_call_later): the guest boots after a reset
    call_later: Callable[[float, Callable[[], None]], Any] | None = None
    boot_pending: bool = False

    # -- lookup ------------------------------------------------------------------------

    def find(self, name: str) -> NetClient | None:
        return next((c for c in self.clients if c.name == name), None)

    def find_netdev(self, name: str) -> NetClient | None:
        """qemu_find_netdev: a backend (not a NIC) of that name."""
        return next((c for c in self.clients if c.name == name and c.kind != "nic"), None)

    def add(self, client: NetClient) -> NetClient:
        self.clients.append(client)
        return client

    def remove(self, client: NetClient) -> None:
        """qemu_del_net_client: a NIC peer keeps a dangling peer and sees its link go
        down; a hub port leaves its hub."""
        if client.peer is not None and client.peer.kind == "nic":
            client.peer.link_down = True
        if client.hub_id is not None and client in self.hubs.get(client.hub_id, []):
            self.hubs[client.hub_id].remove(client)
        client.close()
        if client in self.clients:
            self.clients.remove(client)
        self.on_change()

    # -- hubs [net/hub.c] ----------------------------------------------------------------

    def hub_add_port(self, hub_id: int, name: str | None) -> NetClient:
        """net_hub_add_port: the hub is created on first use; an unnamed port is
        "hub<id>port<n>"."""
        ports = self.hubs.setdefault(hub_id, [])
        number = self.hub_port_counter.get(hub_id, 0)
        self.hub_port_counter[hub_id] = number + 1
        port = NetClient(name=name or f"hub{hub_id}port{number}", kind="hubport",
                         hub_id=hub_id)
        ports.append(port)
        return self.add(port)

    # -- NICs (the qdev side) ------------------------------------------------------------

    def attach_nic(self, *, model: str, typename: str, netdev: str | None,
                   device_id: str | None, qom_path: str, mac: str | None = None,
                   rx_filter: bool = False) -> Nic:
        """A NIC device's net client: set_netdev's checks for `netdev=`
        [hw/core/qdev-properties-system.c set_netdev: -ENOENT, -EEXIST], then
        qemu_new_nic (the name is the device id, or "<model>.<n>") with the first
        free default MAC (net/net.c qemu_macaddr_default_if_unset)."""
        peer = None
        if netdev is not None:
            peer = next((c for c in self.clients if c.name == netdev and c.kind != "nic"), None)
            if peer is None:
                raise GenericError(f"Property '{typename}.netdev' can't find value '{netdev}'")
            if peer.peer is not None:
                raise GenericError(f"Property '{typename}.netdev' can't take value "
                                   f"'{netdev}', it's in use")
        if mac is None:
            index = next(i for i in range(256) if i not in self.macs_in_use)
            self.macs_in_use.add(index)
            mac = _mac_text(index)
        count = self.model_counts.get(model, 0)
        self.model_counts[model] = count + 1
        name = device_id or f"{model}.{count}"
        client = NetClient(name=name, kind="nic", peer=peer,
                           info_str=f"model={model},macaddr={mac}")
        if peer is not None:
            peer.peer = client
        nic = Nic(client=client, model=model, mac=mac, qom_path=qom_path,
                  device_id=device_id, rx_filter=RxFilter() if rx_filter else None)
        client.nic = nic
        self.add(client)
        if self.running:
            self._guest_probes()  # a NIC hot-plugged into a running guest
        return nic

    def detach_nic(self, nic: Nic) -> None:
        """qemu_del_nic: the NIC goes, its backend loses its peer."""
        peer = nic.client.peer
        if peer is not None and peer.peer is nic.client:
            peer.peer = None
        for index in range(256):
            if _mac_text(index) == nic.mac:
                self.macs_in_use.discard(index)
        if nic.client in self.clients:
            self.clients.remove(nic.client)

    def rx_filter_changed(self, nic: Nic) -> None:
        """The guest changed the MAC or rx mode (virtio_net_handle_rx_mode,
        virtio_net_handle_mac): NIC_RX_FILTER_CHANGED, then silence until the next
        query-rx-filter for this NIC [hw/net/virtio-net.c rxfilter_notify]."""
        if not nic.notify_armed:
            return
        nic.notify_armed = False
        data: dict[str, Any] = {"path": nic.qom_path + "/virtio-backend"}
        if nic.device_id is not None:
            data = {"name": nic.device_id, **data}
        self.events.emit("NIC_RX_FILTER_CHANGED", data)

    def guest_driver_starts(self, nic: Nic) -> None:
        """The guest's virtio-net driver (with `nic-driver=filter`) opens the
        interface and sets its receive mode as Linux's virtnet_set_rx_mode does:
        promiscuous and all-multicast off, then the MAC table with the multicast
        groups an IPv4/IPv6 host joins (all-hosts, all-nodes, the solicited-node
        group of its link-local address). Each control command would notify; the
        first one does [hw/net/virtio-net.c virtio_net_handle_rx_mode,
        virtio_net_handle_mac]."""
        rx = nic.rx_filter
        if rx is None or nic.driver_loaded or self.behaviour("nic-driver") != "filter":
            return
        nic.driver_loaded = True
        rx.promiscuous = False
        self.rx_filter_changed(nic)
        rx.allmulti = False
        rx.unicast_table = []
        rx.multicast_table = ["01:00:5e:00:00:01", "33:33:00:00:00:01",
                              "33:33:ff:" + nic.mac[9:]]
        self.rx_filter_changed(nic)

    # -- commands' model -----------------------------------------------------------------

    def set_link(self, name: str, up: bool) -> None:
        """qmp_set_link: the named client's link; a NIC peer's too."""
        client = next((c for c in self.clients if c.name == name), None)
        if client is None:
            raise DeviceNotFound(f"Device '{name}' not found")
        client.link_down = not up
        if client.peer is not None and client.peer.kind == "nic":
            client.peer.link_down = not up

    def query_rx_filter(self, name: str | None) -> list[dict[str, Any]]:
        """qmp_query_rx_filter."""
        out: list[dict[str, Any]] = []
        for client in self.clients:
            if name is not None and client.name != name:
                continue
            if client.kind != "nic":
                if name is not None:
                    raise GenericError(f"net client({name}) isn't a NIC")
                continue
            nic = client.nic
            assert nic is not None
            if nic.rx_filter is not None:
                out.append(_rx_filter_info(nic))
                nic.notify_armed = True
            elif name is not None:
                raise GenericError(f"net client({name}) doesn't support rx-filter querying")
            if name is not None:
                break
        if not out and name is not None:
            raise GenericError(f"invalid net client name: {name}")
        return out

    def info_network(self) -> str:
        """net/net.c hmp_info_network (with net_hub_info first)."""
        lines: list[str] = []
        for hub_id, ports in self.hubs.items():
            lines.append(f"hub {hub_id}\n")
            for port in ports:
                if port.peer is not None:
                    lines.append(f" \\ {port.name}: {_client_line(port.peer)}")
                else:
                    lines.append(f" \\ {port.name}\n")
        for client in self.clients:
            if client.kind == "hubport" or (client.peer is not None and
                                            client.peer.kind == "hubport"):
                continue
            if client.peer is None or client.kind == "nic":
                lines.append(_client_line(client))
            if client.peer is not None and client.kind == "nic":
                lines.append(" \\ " + _client_line(client.peer))
        return "".join(lines)

    # -- Subsystem hooks ---------------------------------------------------------------

    def reset(self) -> None:
        """virtio_net_reset: the filter as after power-on (the notification stays as
        it was); a guest that keeps running boots again and its driver starts, after
        the reset (in guest time, at once in this model)."""
        for client in self.clients:
            if client.nic is not None and client.nic.rx_filter is not None:
                client.nic.rx_filter = RxFilter()
                client.nic.driver_loaded = False
        if self.running:
            self._guest_probes()

    def _guest_probes(self) -> None:
        """The running guest's drivers find their NICs (after a reset, or a
        hot-plug), in guest time: after what caused it (at once in this model)."""
        if self.call_later is not None and not self.boot_pending:
            self.boot_pending = True
            self.call_later(0.0, self._guest_booted)

    def _guest_booted(self) -> None:
        self.boot_pending = False
        self._drivers_start()

    def vm_start(self) -> None:
        self.running = True
        self._drivers_start()

    def vm_stop(self) -> None:
        self.running = False

    def _drivers_start(self) -> None:
        for client in list(self.clients):
            if client.nic is not None:
                self.guest_driver_starts(client.nic)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _client_line(client: NetClient) -> str:
    """print_net_client."""
    return f"{client.name}: index=0,type={client.kind},{client.info_str}\n"


def _rx_filter_info(nic: Nic) -> dict[str, Any]:
    """virtio_net_query_rxfilter; broadcast-allowed reports the inverse of the real
    setting (2.11 assigns n->nobcast, verified)."""
    rx = nic.rx_filter
    assert rx is not None

    def mode(all_: bool, none: bool) -> str:
        return "all" if all_ else "none" if none else "normal"

    return {
        "name": nic.client.name,
        "promiscuous": rx.promiscuous,
        "multicast": mode(rx.allmulti, rx.nomulti),
        "unicast": mode(rx.alluni, rx.nouni),
        "vlan": ("normal" if rx.vlan_table else "none") if rx.vlan_filtering else "all",
        "broadcast-allowed": rx.nobcast,
        "multicast-overflow": rx.multicast_overflow,
        "unicast-overflow": rx.unicast_overflow,
        "main-mac": nic.mac,
        "vlan-table": list(rx.vlan_table),
        "unicast-table": list(rx.unicast_table),
        "multicast-table": list(rx.multicast_table),
    }
