"""HMP's chardev and network commands [hmp.c hmp_info_chardev, hmp_chardev_add,
hmp_chardev_change; net/net.c hmp_info_network; net/slirp.c hmp_hostfwd_*].

`vmm` layer: each function runs the QMP command hmp.c calls (through the dispatcher)
and prints what QEMU 2.11 prints. The option string of chardev-add/-change is read
as `-chardev` is (`devices.chardev.model.backend_from_opts`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schema.errors import GenericError
from schema.opts.qemuopts import OptsError, OptsStore
from vmm.cmdline.groups import GROUPS

if TYPE_CHECKING:
    from devices.net.commands import NetCommands
    from devices.net.model import NetClient, NetClients
    from vmm.hmp.commands import Args
    from vmm.hmp.interpreter import Hmp


def hmp_info_chardev(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_info_chardev: "<label>: filename=<filename>" per chardev."""
    for info in hmp.qmp("query-chardev"):
        hmp.printf(f"{info['label']}: filename={info['filename']}\n")


def _chardev_backend(hmp: Hmp, text: str) -> tuple[str, dict[str, Any]]:
    from devices.chardev.model import backend_from_opts

    store = OptsStore(GROUPS)
    try:
        opts = store.parse(GROUPS["chardev"], text, True, ())
    except OptsError as err:
        hmp.printf(f"{err.message}\n{err.hint}")
        raise GenericError("Parsing chardev args failed") from None
    frozen = opts.freeze()
    return frozen.id or "", backend_from_opts(frozen)


def hmp_chardev_add(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_chardev_add: the options as -chardev reads them, then
    qemu_chr_new_from_opts."""
    ident, backend = _chardev_backend(hmp, args["args"])
    hmp.qmp("chardev-add", ident, backend)


def hmp_chardev_change(hmp: Hmp, args: Args) -> None:
    """hmp.c hmp_chardev_change: the options may not carry an id of their own."""
    ident, backend = _chardev_backend(hmp, args["args"])
    if ident:
        raise GenericError("Unexpected 'id' parameter")
    hmp.qmp("chardev-change", args["id"], backend)


def _commands(hmp: Hmp) -> NetCommands:
    assert hmp.state.net is not None
    return hmp.state.net


def _net(hmp: Hmp) -> NetClients:
    return _commands(hmp).net


def hmp_info_network(hmp: Hmp, args: Args) -> None:
    """net/net.c hmp_info_network."""
    hmp.printf(_net(hmp).info_network())


def _slirp_lookup(hmp: Hmp, vlan: str | None, stack: str | None) -> NetClient | None:
    """net/slirp.c slirp_lookup: with two arguments, a (hub id, name) pair; else the
    first user network."""
    net = _net(hmp)
    if vlan is not None:
        from schema.opts.cutils import strtoll

        hub_id, _end, _ = strtoll(vlan, 0)
        port = next((p for p in net.hubs.get(hub_id, []) if p.name == stack), None)
        client = port.peer if port is not None else None
        if client is None:
            client = next((c for c in net.hubs.get(hub_id, [])
                           if c.peer is not None and c.peer.name == stack), None)
        if client is None:
            hmp.printf("unrecognized (vlan-id, stackname) pair\n")
            return None
        if client.kind != "user":
            hmp.printf("invalid device specified\n")
            return None
        return client
    first = next((c for c in net.clients if c.kind == "user"), None)
    if first is None:
        hmp.printf("user mode network stack not in use\n")
    return first


def hmp_hostfwd_add(hmp: Hmp, args: Args) -> None:
    """net/slirp.c hmp_hostfwd_add: a failure is printed (error_report_err)."""
    if args.get("arg2") is not None:
        client = _slirp_lookup(hmp, args["arg1"], args["arg2"])
        rule = args.get("arg3")
    else:
        client = _slirp_lookup(hmp, None, None)
        rule = args["arg1"]
    if client is None:
        return
    try:
        _commands(hmp).hostfwd_add(client, rule or "")
    except GenericError as err:
        hmp.printf(err.desc + "\n")


def hmp_hostfwd_remove(hmp: Hmp, args: Args) -> None:
    """net/slirp.c hmp_hostfwd_remove."""
    if args.get("arg2") is not None:
        client = _slirp_lookup(hmp, args["arg1"], args["arg2"])
        src = args.get("arg3")
    else:
        client = _slirp_lookup(hmp, None, None)
        src = args["arg1"]
    if client is None:
        return
    parts = (src or "").split(":", 2)
    if src is None or len(parts) < 3 or parts[0] not in ("tcp", "", "udp"):
        hmp.printf("invalid format\n")
        return
    from devices.net.commands import _inet_aton

    udp = parts[0] == "udp"
    host = parts[1]
    if host and _inet_aton(host) is None:
        hmp.printf("invalid format\n")
        return
    port = _atoi(parts[2])
    rule = next((r for r in client.hostfwds if r.udp == udp and r.host_port == port and
                 (r.host_addr or "0.0.0.0") == (_inet_aton(host) if host else "0.0.0.0")),
                None)
    if rule is not None:
        client.hostfwds.remove(rule)
        if rule.handle is not None:
            rule.handle.close()
    hmp.printf(f"host forwarding rule for {src} {'removed' if rule else 'not found'}\n")


def _atoi(text: str) -> int:
    """atoi: leading blanks, a sign, digits; anything else stops it."""
    text = text.lstrip(" \t\n\r\v\f")
    sign = -1 if text[:1] == "-" else 1
    text = text[1:] if text[:1] in "+-" else text
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return sign * int(digits) if digits else 0


def hmp_info_usernet(hmp: Hmp, args: Args) -> None:
    """net/slirp.c hmp_info_usernet with slirp_connection_info: the host forwarding
    rules are the connections a guest without traffic has (newest first)."""
    net = _net(hmp)
    for client in net.clients:
        if client.kind != "user":
            continue
        hub = next((h for h, ports in net.hubs.items()
                    if any(p.peer is client for p in ports)), -1)
        hmp.printf(f"VLAN {hub} ({client.name}):\n")
        hmp.printf("  Protocol[State]    FD  Source Address  Port   Dest. Address  Port "
                   "RecvQ SendQ\n")
        for udp in (False, True):
            for rule in client.hostfwds:
                if rule.udp != udp:
                    continue
                sock = getattr(rule.handle, "sock", None)
                fd = sock.fileno() if sock is not None else -1
                # getsockname: the address and port the host socket really has
                host, port = sock.getsockname()[:2] if sock is not None else ("", 0)
                label = "  UDP[HOST_FORWARD]" if udp else "  TCP[HOST_FORWARD]"
                src = host if host not in ("", "0.0.0.0") else "*"
                hmp.printf(f"{label:<19} {fd:3d} {src:>15} {port:5d} "
                           f"{rule.guest_addr:>15} {rule.guest_port:5d} {0:5d} {0:5d}\n")
