"""netdev_add, netdev_del, set_link and query-rx-filter [net/net.c; net/hub.c;
net/slirp.c; net/socket.c; net/tap.c; net/vhost-user.c; qapi/opts-visitor.c].

Part of the pure `devices` layer, over `devices.net.model.NetClients`. netdev_add
takes QEMU's path: the arguments become a `netdev` QemuOpts (qemu_opts_from_qdict:
the id's checks, "Duplicate ID"), the OptsVisitor reads them as the schema's `Netdev`
union (missing, unknown and badly typed options, in member order, then the first
option nobody read), net_client_init1 refuses types this build lacks, and the
backend's init function checks its options and opens what it opens on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schema.errors import (
    QERR_INVALID_PARAMETER,
    QERR_INVALID_PARAMETER_VALUE,
    QERR_MISSING_PARAMETER,
    DeviceNotFound,
    GenericError,
)
from schema.handlers import qmp_command
from schema.opts.cutils import strtoll
from schema.opts.qemuopts import OptsList, OptsStore, qobject_as_opt_string

if TYPE_CHECKING:
    import ipaddress

    from devices.net.model import NetClient, NetClients

NETDEV_OPTS = OptsList("netdev", implied="type")
# net_client_init_fun of the catalogue's build: vde and netmap are not compiled in
# (no libvdeplug, CONFIG_NETMAP is off on Linux by default); nic and dump are never
# netdev backends.
NOT_NETDEV_BACKENDS = ("nic", "dump", "vde", "netmap", "none")
# The reference build's CONFIG_QEMU_HELPERDIR (./configure's default prefix).
DEFAULT_BRIDGE_HELPER = "/usr/local/libexec/qemu-bridge-helper"

FdParam = Callable[[str], int]


class _OptsVisitor:
    """qapi/opts-visitor.c over one QemuOpts: members are looked up by name, scalars
    take the last value, `processed` options are struck off, and `check` reports the
    first option nobody read."""

    def __init__(self, ident: str | None, items: list[tuple[str, str]]) -> None:
        self.items = list(items)
        if ident is not None:
            self.items.append(("id", ident))  # the fake id option
        self.unprocessed = {name for name, _ in self.items}

    def present(self, name: str) -> bool:
        return name in self.unprocessed

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.items if key == name]

    def scalar(self, name: str) -> str:
        found = self.values(name)
        if not found or name not in self.unprocessed:
            raise GenericError(QERR_MISSING_PARAMETER % name)
        return found[-1]

    def done(self, name: str) -> None:
        self.unprocessed.discard(name)

    def check(self) -> None:
        for name, _ in self.items:
            if name in self.unprocessed:
                raise GenericError(QERR_INVALID_PARAMETER % name)


def _visit_scalar(ov: _OptsVisitor, name: str, type_name: str) -> Any:
    text = ov.scalar(name)
    if type_name == "str":
        value: Any = text
    elif type_name == "bool":
        if text in ("on", "yes", "y"):
            value = True
        elif text in ("off", "no", "n"):
            value = False
        else:
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, "on|yes|y|off|no|n"))
    elif type_name in ("int", "int64", "int32", "int16", "int8"):
        number, end, overflow = strtoll(text, 0)
        if overflow or end == 0 or end != len(text):
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, "an int64 value"))
        bits = {"int": 64, "int64": 64}.get(type_name, int(type_name[3:] or 64))
        if not -(1 << (bits - 1)) <= number < 1 << (bits - 1):
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, f"int{bits}_t"))
        value = number
    elif type_name in ("uint64", "uint32", "uint16", "uint8", "size"):
        if type_name == "size":
            from schema.opts.cutils import do_strtosz

            try:
                value = do_strtosz(text)
            except Exception:
                raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, "a size value")) \
                    from None
        else:
            number, end, overflow = strtoll(text, 0)
            if overflow or end == 0 or end != len(text) or number < 0 or \
                    text.lstrip().startswith("-"):
                raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, "a uint64 value"))
            bits = int(type_name[4:])
            if number >= 1 << bits:
                raise GenericError(QERR_INVALID_PARAMETER_VALUE % (name, f"uint{bits}_t"))
            value = number
    else:
        value = text
    ov.done(name)
    return value


def visit_netdev(schema: Any, ident: str | None, items: list[tuple[str, str]]) -> dict[str, Any]:
    """visit_type_Netdev with the OptsVisitor: the base members (id, type), then the
    variant's members in schema order, then the leftover check."""
    ov = _OptsVisitor(ident, items)
    netdev: dict[str, Any] = {"id": _visit_scalar(ov, "id", "str")}
    kind = ov.scalar("type")
    union = schema.lookup_type("Netdev")
    variant = next((v for v in union.variants.variants if v.name == kind), None)
    if variant is None:
        raise GenericError(QERR_INVALID_PARAMETER % kind)
    ov.done("type")
    netdev["type"] = kind
    for member in variant.type.members:
        if member.optional and not ov.present(member.name):
            continue
        type_name = member.type.name
        if type_name == "StringList":
            netdev[member.name] = [v for v in ov.values(member.name)]
            ov.done(member.name)
        else:
            netdev[member.name] = _visit_scalar(ov, member.name, type_name)
    ov.check()
    return netdev


def _inet_aton(text: str) -> str | None:
    """inet_aton's strictness is close enough to ipaddress for dotted quads."""
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _get_str_sep(text: str, sep: str) -> tuple[str, str] | None:
    """net/net.c get_str_sep: the part before `sep` and the rest, or None."""
    if sep not in text:
        return None
    head, rest = text.split(sep, 1)
    return head, rest


def _c_strtol(text: str) -> tuple[int, bool]:
    number, end, _overflow = strtoll(text, 0)
    return number, end == len(text) and end > 0


def parse_hostfwd(redir: str) -> tuple[bool, str, int, str, int]:
    """slirp_hostfwd's syntax: [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport."""
    def fail(reason: str) -> GenericError:
        return GenericError(f"Invalid host forwarding rule '{redir}' ({reason})")

    step = _get_str_sep(redir, ":")
    if step is None:
        raise fail("No : separators")
    proto, rest = step
    if proto not in ("tcp", "", "udp"):
        raise fail("Bad protocol name")
    step = _get_str_sep(rest, ":")
    if step is None:
        raise fail("Missing : separator")
    host, rest = step
    if host and _inet_aton(host) is None:
        raise fail("Bad host address")
    step = _get_str_sep(rest, "-")
    if step is None:
        raise fail("Bad host port separator")
    text, rest = step
    host_port, whole = _c_strtol(text)
    if not whole and text != "":
        raise fail("Bad host port")
    if not 0 <= host_port <= 65535:
        raise fail("Bad host port")
    step = _get_str_sep(rest, ":")
    if step is None:
        raise fail("Missing guest address")
    guest, text = step
    if guest and _inet_aton(guest) is None:
        raise fail("Bad guest address")
    guest_port, whole = _c_strtol(text)
    if not whole or not 1 <= guest_port <= 65535:
        raise fail("Bad guest port")
    return proto == "udp", host, host_port, guest, guest_port


def parse_host_port(text: str) -> tuple[str, int]:
    """net/net.c parse_host_port (IPv4 only)."""
    step = _get_str_sep(text, ":")
    if step is None:
        raise GenericError(f"host address '{text}' doesn't contain ':' separating host "
                           "from port")
    host, port_text = step
    if host and host[0].isdigit() and _inet_aton(host) is None:
        raise GenericError(f"host address '{host}' is not a valid IPv4 address")
    if host and not host[0].isdigit() and host != "localhost":
        import socket

        try:
            host = socket.gethostbyname(host)
        except OSError:
            raise GenericError(f"can't resolve host address '{host}'") from None
    number, end, _ = strtoll(port_text, 0)
    if end == 0:
        raise GenericError(f"port number '{port_text}' is invalid")
    return host or "0.0.0.0", number & 0xFFFF


class NetCommands:
    """QMP's netdev commands over one machine's net clients."""

    def __init__(self, net: Callable[[], NetClients], schema: Any, fd_param: FdParam,
                 find_chardev: Callable[[str], tuple[str, str] | None] = lambda ident: None,
                 report: Callable[[str], None] = lambda text: None) -> None:
        self._net = net  # built on first use (the machine's net clients)
        self.schema = schema
        self.fd_param = fd_param  # monitor_fd_param on the current monitor
        self.find_chardev = find_chardev  # (backend type, address type) of a chardev
        self.report = report  # error_report: the program's stderr
        self.store = OptsStore({"netdev": NETDEV_OPTS})

    @property
    def net(self) -> NetClients:
        return self._net()

    # -- netdev_add ---------------------------------------------------------------------

    @qmp_command("netdev_add")
    def netdev_add(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """qmp_netdev_add: qemu_opts_from_qdict, then netdev_add (its opts are deleted
        again when it fails)."""
        ident = arguments.get("id")
        opts = self.store.create(NETDEV_OPTS, ident if isinstance(ident, str) else None,
                                 True, ())
        for key, value in arguments.items():
            if key == "id":
                continue
            text = qobject_as_opt_string(value)
            if text is not None:
                opts.items.append((key, text))
        try:
            self.add_from_opts(opts.id, list(opts.items))
        except GenericError:
            self.store.delete(opts)
            raise
        return {}

    def add_from_opts(self, ident: str | None, items: list[tuple[str, str]]) -> NetClient:
        """net_client_init(opts, is_netdev=true) for `-netdev` and netdev_add."""
        netdev = visit_netdev(self.schema, ident, items)
        kind = netdev["type"]
        if kind in NOT_NETDEV_BACKENDS:
            raise GenericError(QERR_INVALID_PARAMETER_VALUE % ("type", "a netdev backend type"))
        init = getattr(self, "_init_" + kind.replace("-", "_"))
        client: NetClient = init(netdev, netdev["id"])
        client.is_netdev = True
        self.net.on_change()
        return client

    def _new(self, kind: str, name: str, info: str = "") -> NetClient:
        from devices.net.model import NetClient

        return self.net.add(NetClient(name=name, kind=kind, info_str=info))

    def _init_user(self, nd: dict[str, Any], name: str) -> NetClient:
        """net_init_slirp / net_slirp_init: the address checks, then the host
        forwarding rules (each a real listening socket)."""
        import ipaddress

        ipv4 = nd.get("ipv4", True) if "ipv6" not in nd or "ipv4" in nd else not nd["ipv6"]
        ipv6 = nd.get("ipv6", True) if "ipv4" not in nd or "ipv6" in nd else not nd["ipv4"]
        if not ipv4 and any(k in nd for k in ("net", "host", "dns")):
            raise GenericError("IPv4 disabled but netmask/host/dns provided")
        if not ipv6 and any(k in nd for k in ("ipv6-prefix", "ipv6-host", "ipv6-dns")):
            raise GenericError("IPv6 disabled but prefix/host6/dns6 provided")
        if not ipv4 and not ipv6:
            raise GenericError("IPv4 and IPv6 disabled")
        net = ipaddress.IPv4Network("10.0.2.0/24")
        vnet = nd.get("net")
        if vnet is not None:
            net = _slirp_network(vnet)
        def address(key: str, offset: int, what: tuple[str, str]) -> ipaddress.IPv4Address:
            """An address option, or the network's default at `offset`, inside it."""
            if key not in nd:
                value = net.network_address + offset
            else:
                parsed = _inet_aton(nd[key])
                if parsed is None:
                    raise GenericError(f"Failed to parse {what[0]}")
                value = ipaddress.IPv4Address(parsed)
            if value not in net:
                raise GenericError(f"{what[1]} doesn't belong to network")
            return value

        host = address("host", 2, ("host", "Host"))
        dns = address("dns", 3, ("DNS", "DNS"))
        if dns == host:
            raise GenericError("DNS must be different from host")
        dhcp = address("dhcpstart", 15, ("DHCP start address", "DHCP"))
        if dhcp in (host, dns):
            raise GenericError("DNS must be different from host and DNS")
        if "smbserver" in nd and _inet_aton(nd["smbserver"]) is None:
            raise GenericError("Failed to parse SMB address")
        restrict = nd.get("restrict", False)
        client = self._new("user", name, f"net={net.network_address},restrict="
                                         f"{'on' if restrict else 'off'}")
        client.dhcp_start = str(dhcp)
        try:
            for rule in nd.get("hostfwd", []):
                self.hostfwd_add(client, rule)
        except GenericError:
            self.net.remove(client)
            raise
        return client

    def hostfwd_add(self, client: NetClient, rule: str) -> None:
        """slirp_hostfwd + slirp_add_hostfwd: a real listening socket on the host."""
        from devices.net.model import HostFwd

        udp, host, host_port, guest, guest_port = parse_hostfwd(rule)
        handle = self.net.host.hostfwd_listen(udp, host, host_port)
        if handle is None:
            raise GenericError(f"Could not set up host forwarding rule '{rule}'")
        client.hostfwds.insert(0, HostFwd(udp=udp, host_addr=host, host_port=host_port,
                                          guest_addr=guest or client.dhcp_start,
                                          guest_port=guest_port, handle=handle))

    def _init_tap(self, nd: dict[str, Any], name: str) -> NetClient:
        """net_init_tap: with fd= the descriptor is the monitor's (getfd) or a
        number; without, /dev/net/tun is configured, which this emulator never does
        to the host (it answers as QEMU without CAP_NET_ADMIN)."""
        if "fd" in nd:
            others = ("ifname", "script", "downscript", "vnet_hdr", "helper", "queues",
                      "fds", "vhostfds")
            if any(k in nd for k in others):
                raise GenericError("ifname=, script=, downscript=, vnet_hdr=, helper=, "
                                   "queues=, fds=, and vhostfds= are invalid with fd=")
            fd = self.fd_param(nd["fd"])
            client = self._new("tap", name, f"fd={fd}")
            client.handles.append(self.net.host.adopt_fd(fd))
            return client
        if "fds" in nd:
            if any(k in nd for k in ("ifname", "script", "downscript", "vnet_hdr", "helper",
                                     "queues", "vhostfd")):
                raise GenericError("ifname=, script=, downscript=, vnet_hdr=, helper=, "
                                   "queues=, and vhostfd= are invalid with fds=")
            fds = [self.fd_param(text) for text in nd["fds"].split(":")]
            client = self._new("tap", name, f"fd={fds[0]}")
            client.handles.extend(self.net.host.adopt_fd(fd) for fd in fds)
            return client
        if "helper" in nd:
            if any(k in nd for k in ("ifname", "script", "downscript", "vnet_hdr", "queues",
                                     "vhostfds")):
                raise GenericError("ifname=, script=, downscript=, vnet_hdr=, queues=, and "
                                   "vhostfds= are invalid with helper=")
            handle = self.net.host.run_bridge_helper(nd["helper"], nd.get("br", "br0"))
            client = self._new("tap", name, f"helper={nd['helper']}")
            client.handles.append(handle)
            return client
        if "vhostfds" in nd:
            raise GenericError("vhostfds= is invalid if fds= wasn't specified")
        self.net.host.open_tun(nd.get("ifname", ""))
        raise AssertionError("open_tun returns only with an error")

    def _init_bridge(self, nd: dict[str, Any], name: str) -> NetClient:
        """net_init_bridge: the helper runs for real (the reference build's default
        path when none is given)."""
        helper = nd.get("helper", DEFAULT_BRIDGE_HELPER)
        bridge = nd.get("br", "br0")
        handle = self.net.host.run_bridge_helper(helper, bridge)
        client = self._new("bridge", name, f"helper={helper},br={bridge}")
        client.handles.append(handle)
        return client

    def _init_socket(self, nd: dict[str, Any], name: str) -> NetClient:
        """net_init_socket: exactly one mode; listen and connect for real."""
        import ipaddress

        modes = sum(k in nd for k in ("fd", "listen", "connect", "mcast", "udp"))
        if modes != 1:
            raise GenericError("exactly one of listen=, connect=, mcast= or udp= is required")
        if "localaddr" in nd and "mcast" not in nd and "udp" not in nd:
            raise GenericError("localaddr= is only valid with mcast= or udp=")
        if "fd" in nd:
            fd = self.fd_param(nd["fd"])
            client = self._new("socket", name, f"socket: fd={fd}")
            client.handles.append(self.net.host.adopt_fd(fd))
            return client
        if "listen" in nd:
            host, port = parse_host_port(nd["listen"])
            handle = self.net.host.socket_listen(host, port)
            client = self._new("socket", name)
            client.link_down = True  # until a peer connects
            client.handles.append(handle)
            return client
        if "connect" in nd:
            host, port = parse_host_port(nd["connect"])
            handle = self.net.host.socket_connect(host, port)
            client = self._new("socket", name, f"socket: connect to {host}:{port}")
            client.handles.append(handle)
            return client
        if "udp" in nd and "localaddr" not in nd:
            raise GenericError("localaddr= is mandatory with udp=")
        key = "mcast" if "mcast" in nd else "udp"
        host, port = parse_host_port(nd[key])
        if key == "mcast" and not ipaddress.IPv4Address(host).is_multicast:
            value = int(ipaddress.IPv4Address(host))
            raise GenericError(f"specified mcastaddr {host} (0x{value:08x}) does not "
                               "contain a multicast address")
        client = self._new("socket", name, f"socket: {key}={host}:{port}")
        return client

    def _init_hubport(self, nd: dict[str, Any], name: str) -> NetClient:
        """net_init_hubport: a port of hub `hubid` (created on first use)."""
        return self.net.hub_add_port(int(nd["hubid"]), name)

    def _init_l2tpv3(self, nd: dict[str, Any], name: str) -> NetClient:
        """net_init_l2tpv3: its failures are printed (error_report) and the command
        says "Device 'l2tpv3' could not be initialized"; the socket is real (UDP
        encapsulation, or a raw IPPROTO_L2TP socket)."""
        failed = GenericError("Device 'l2tpv3' could not be initialized")
        if nd.get("offset", 0) > 256:
            self.report("l2tpv3_open : offset must be less than 256 bytes")
            raise failed
        if ("rxcookie" in nd) != ("txcookie" in nd):
            raise failed
        udp = bool(nd.get("udp", False))
        if udp and not ("srcport" in nd and "dstport" in nd):
            self.report("l2tpv3_open : need both src and dst port for udp")
            raise failed
        try:
            handle = self.net.host.l2tpv3_open(
                bool(nd.get("ipv6", False)), udp, nd["src"], nd.get("srcport"),
                nd["dst"], nd.get("dstport"))
        except OSError as err:
            self.report(str(err))
            raise failed from None
        client = self._new("l2tpv3", name, "l2tpv3: connected")
        client.handles.append(handle)
        return client

    def _init_vhost_user(self, nd: dict[str, Any], name: str) -> NetClient:
        """net_init_vhost_user: net_vhost_claim_chardev's checks (a socket chardev is
        reconnectable; a unix one passes descriptors), the queue count; then QEMU
        waits for the vhost-user backend's handshake, which is not modelled."""
        ident = nd["chardev"]
        found = self.find_chardev(ident)
        if found is None:
            raise GenericError(f'chardev "{ident}" not found')
        kind, family = found
        if kind != "socket":
            raise GenericError(f'chardev "{ident}" is not reconnectable')
        if family != "unix":
            raise GenericError(f'chardev "{ident}" does not support FD passing')
        queues = nd.get("queues", 1)
        if not 1 <= queues <= 1024:
            raise GenericError("vhost-user number of queues must be in range [1, 1024]")
        raise GenericError("vhost-user backend handshake is not modelled by qmp-emulator")

    # -- the other commands -------------------------------------------------------------

    @qmp_command("netdev_del")
    def netdev_del(self, id: str) -> None:
        """qmp_netdev_del: NICs are not searched; a client without netdev options is
        "not a netdev"; the id is free again at once."""
        client = self.net.find_netdev(id)
        if client is None:
            raise DeviceNotFound(f"Device '{id}' not found")
        opts = self.store.find("netdev", id)
        if opts is None or not client.is_netdev:
            raise GenericError(f"Device '{id}' is not a netdev")
        self.net.remove(client)
        self.store.delete(opts)

    @qmp_command("set_link")
    def set_link(self, name: str, up: bool) -> None:
        self.net.set_link(name, up)

    @qmp_command("query-rx-filter")
    def query_rx_filter(self, name: str | None = None) -> list[dict[str, Any]]:
        return self.net.query_rx_filter(name)


def _slirp_network(vnet: str) -> ipaddress.IPv4Network:
    """net_slirp_init's `net=addr[/mask]`: a bare address gets its class's mask."""
    import ipaddress

    step = _get_str_sep(vnet, "/")
    if step is None:
        parsed = _inet_aton(vnet)
        if parsed is None:
            raise GenericError("Failed to parse netmask")
        addr = int(ipaddress.IPv4Address(parsed))
        if not addr & 0x80000000:
            bits = 8
        elif addr & 0xFFF00000 == 0xAC100000:
            bits = 12
        elif addr & 0xC0000000 == 0x80000000 or addr & 0xFFFF0000 == 0xC0A80000:
            bits = 16
        elif addr & 0xFFFF0000 == 0xC6120000:
            bits = 15
        elif addr & 0xE0000000 == 0xE0000000:
            bits = 24
        else:
            bits = 28
        return ipaddress.IPv4Network((addr, bits), strict=False)
    base, mask = step
    parsed = _inet_aton(base)
    if parsed is None:
        raise GenericError("Failed to parse netmask")
    shift, whole = _c_strtol(mask) if mask[:1].isdigit() else (0, False)
    if not whole:
        if _inet_aton(mask) is None:
            raise GenericError("Failed to parse netmask (trailing chars)")
        return ipaddress.IPv4Network(f"{parsed}/{mask}", strict=False)
    if not 4 <= shift <= 32:
        raise GenericError("Invalid netmask provided (must be in range 4-32)")
    return ipaddress.IPv4Network((int(ipaddress.IPv4Address(parsed)), shift), strict=False)
