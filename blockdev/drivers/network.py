"""Network protocol drivers: `nbd` for real; `iscsi`, `rbd`, `gluster`, `sheepdog`,
`ssh`, `nfs`, `vxhs` and the curl protocols (`http`, `https`, `ftp`, `ftps`) simulated.

Part of the `blockdev` layer (`blockdev.drivers`) [block/nbd.c, block/iscsi.c,
block/rbd.c, block/gluster.c, block/sheepdog.c, block/ssh.c, block/nfs.c,
block/vxhs.c, block/curl.c]. Their options are checked as the driver's open checks
them and their file names parsed as QEMU parses them. An `nbd` node connects to its
server when it opens (`blockdev.nbd.client`: a socket, or the emulator's own server
through the context's `nbd_loopback`), takes the export's size, and reads and
writes through the connection (`io_ops`). The others never contact a server, so a
node's length is the block layer's `network_size`.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from blockdev.drivers.base import SimState, consume_prefix, sim_getlength, sim_truncate
from blockdev.graph import DriverContext, DriverSpec, Node, OpenFn
from blockdev.options import Flat
from schema.errors import GenericError

if TYPE_CHECKING:
    from blockdev.iotypes import BlockStatus, GenericIO
    from blockdev.nbd.client import NbdClient


def _network_open(*keys: str, required: Callable[[dict[str, Any]], str | None] | None = None
                  ) -> OpenFn:
    def open_(ctx: DriverContext, bs: Node, options: Flat) -> None:
        taken = consume_prefix(options, *keys)
        if required is not None:
            problem = required(taken)
            if problem is not None:
                raise GenericError(problem)
        bs.state = SimState(size=ctx.network_size, extra=taken)
    return open_


# --- nbd ----------------------------------------------------------------------------------

NBD_KEYS = ("server", "export", "tls-creds", "host", "port", "path", "filename")


def _nbd_open(ctx: DriverContext, bs: Node, options: Flat) -> None:
    """nbd_open / nbd_config: the legacy host/port/path options become `server`."""
    taken = consume_prefix(options, *NBD_KEYS)
    server = {k[len("server."):]: v for k, v in taken.items() if k.startswith("server.")}
    legacy = {k: taken[k] for k in ("host", "port", "path") if k in taken}
    if server and legacy:
        raise GenericError("Cannot use 'server' and path/host/port at the same time")
    if "path" in legacy and "host" in legacy:
        raise GenericError("path and host may not be used at the same time")
    if "port" in legacy and "host" not in legacy:
        raise GenericError("port may not be used without host")
    if legacy:
        if "path" in legacy:
            server = {"type": "unix", "path": legacy["path"]}
        else:
            server = {"type": "inet", "host": legacy["host"],
                      "port": str(legacy.get("port", "10809"))}
    if not server:
        raise GenericError("NBD server address missing")
    if "tls-creds" in taken:
        creds = taken["tls-creds"]
        if not ctx.has_tls_creds(creds):
            raise GenericError(f"No TLS credentials with id '{creds}'")
    extra: dict[str, Any] = {"server": server}
    if "export" in taken:
        extra["export"] = taken["export"]
    if "tls-creds" in taken:
        extra["tls-creds"] = taken["tls-creds"]
    from blockdev.nbd.client import NbdClient

    export = taken.get("export")
    client = NbdClient.connect(server, export, ctx.nbd_loopback(server))
    bs.state = NbdState(size=client.size, extra=extra, io_ops=NbdOps(client))


@attrs.define(kw_only=True, eq=False)
class NbdState(SimState):
    """An open `nbd` node: the export's size and the connection's callbacks."""

    io_ops: NbdOps


class NbdOps:
    """block/nbd-client.c's callbacks (DataOps): each request goes over the connection;
    the server's error comes back as the errno it maps to."""

    def __init__(self, client: NbdClient) -> None:
        self.client = client

    def _call(self, fn: Callable[[], Any]) -> Any:
        from blockdev.iotypes import BlockIOError
        from blockdev.nbd.codec import ExportIOError

        try:
            return fn()
        except ExportIOError as err:
            raise BlockIOError(err.errno) from None
        except OSError as err:
            raise BlockIOError(err.errno or errno_mod.EIO) from None

    def pread(self, io: GenericIO, bs: Node, offset: int, length: int) -> bytes:
        return bytes(self._call(lambda: self.client.pread(offset, length)))

    def pwrite(self, io: GenericIO, bs: Node, offset: int, data: bytes) -> None:
        self._call(lambda: self.client.pwrite(offset, data))

    def pwrite_zeroes(self, io: GenericIO, bs: Node, offset: int, length: int,
                      unmap: bool) -> None:
        self._call(lambda: self.client.pwrite_zeroes(offset, length, may_unmap=unmap))

    def pdiscard(self, io: GenericIO, bs: Node, offset: int, length: int) -> None:
        self._call(lambda: self.client.pdiscard(offset, length))

    def flush(self, io: GenericIO, bs: Node) -> None:
        self._call(self.client.flush)

    def block_status(self, io: GenericIO, bs: Node, offset: int, length: int) -> BlockStatus:
        """2.11's nbd driver has no block status: all data, allocated
        (bdrv_co_block_status without a driver callback)."""
        from blockdev.iotypes import BlockStatus

        return BlockStatus(pnum=length, data=True, allocated=True)


def _nbd_close(bs: Node) -> None:
    """nbd_close -> nbd_client_close: NBD_CMD_DISC, then the socket."""
    if isinstance(bs.state, NbdState):
        bs.state.io_ops.client.close()
def _nbd_parse_filename(filename: str, options: Flat) -> None:
    """nbd_parse_filename / nbd_parse_uri: the nbd: and nbd:// file name forms."""
    for key in ("host", "port", "path", "export", "server"):
        if any(k == key or k.startswith(key + ".") for k in options):
            raise GenericError(f"Option '{key}' cannot be used with a file name")
    if "://" in filename:
        from urllib.parse import parse_qs, urlsplit

        uri = urlsplit(filename)
        scheme = uri.scheme
        if scheme not in ("nbd", "nbd+tcp", "nbd+unix"):
            raise GenericError("No valid URL specified")
        export: str | None = uri.path[1:] if uri.path.startswith("/") else uri.path
        if export:
            options["export"] = export
        query = parse_qs(uri.query)
        if scheme == "nbd+unix":
            if "socket" not in query or uri.netloc:
                raise GenericError("No valid URL specified")
            options["server.type"] = "unix"
            options["server.path"] = query["socket"][0]
        else:
            if query or not uri.hostname:
                raise GenericError("No valid URL specified")
            options["server.type"] = "inet"
            options["server.host"] = uri.hostname
            options["server.port"] = str(uri.port or 10809)
        return
    # the export name is cut off first (an empty one leaves every option unset)
    rest, found, export = filename.partition(":exportname=")
    if found:
        if not export:
            return
        options["export"] = export
    if not rest.startswith("nbd:"):
        raise GenericError("File name string for NBD must start with 'nbd:'")
    rest = rest[4:]
    if not rest:
        return
    if rest.startswith("unix:"):
        options["server.type"] = "unix"
        options["server.path"] = rest[5:]
    else:
        from schema.opts.sockets import inet_parse

        addr = inet_parse(rest)  # HOST:PORT, no default port
        options["server.type"] = "inet"
        options["server.host"] = addr["host"]
        options["server.port"] = addr["port"]


def _nbd_refresh_filename(bs: Node, options: Flat) -> None:
    """nbd_refresh_filename."""
    extra = bs.state.extra
    server = extra["server"]
    export = extra.get("export")
    host = port = path = None
    if server.get("type") == "inet":
        if not any(k in server for k in ("ipv4", "ipv6", "to")):
            host, port = server.get("host"), server.get("port")
    elif server.get("type") == "unix":
        path = server.get("path")
    opts: Flat = {"driver": "nbd"}
    if path and export:
        bs.exact_filename = f"nbd+unix:///{export}?socket={path}"
    elif path:
        bs.exact_filename = f"nbd+unix://?socket={path}"
    elif host and export:
        bs.exact_filename = f"nbd://{host}:{port}/{export}"
    elif host:
        bs.exact_filename = f"nbd://{host}:{port}"
    for k, v in server.items():
        opts[f"server.{k}"] = v
    if export:
        opts["export"] = export
    if extra.get("tls-creds"):
        opts["tls-creds"] = extra["tls-creds"]
    bs.full_open_options = opts


def _url_parse(scheme: str) -> Callable[[str, Flat], None]:
    def parse(filename: str, options: Flat) -> None:
        options["url"] = filename
    return parse


def _network_driver(name: str, keys: tuple[str, ...], *, protocol_name: str | None = None,
                    open_: OpenFn | None = None, needs_filename: bool = False,
                    url: bool = False, **kw: Any) -> DriverSpec:
    return DriverSpec(
        format_name=name, protocol_name=protocol_name or name, protocol=True,
        open=open_ or _network_open(*keys), needs_filename=needs_filename,
        getlength=sim_getlength, has_variable_length=True,
        parse_filename=_url_parse(name) if url else kw.pop("parse_filename", _keep_filename),
        **kw)


def _keep_filename(filename: str, options: Flat) -> None:
    """Drivers whose parse_filename we do not reproduce keep the name as `filename`."""


CURL_KEYS = ("url", "readahead", "timeout", "sslverify", "cookie", "cookie-secret",
             "username", "password-secret", "proxy-username", "proxy-password-secret")

NBD = DriverSpec(format_name="nbd", protocol_name="nbd", protocol=True, open=_nbd_open,
                 parse_filename=_nbd_parse_filename, refresh_filename=_nbd_refresh_filename,
                 getlength=sim_getlength, has_variable_length=True, close=_nbd_close)

SPECS = (
    NBD,
    _network_driver("iscsi", ("transport", "portal", "target", "lun", "user",
                              "password-secret", "initiator-name", "header-digest",
                              "timeout", "filename"), has_get_info=True,
                    truncate=sim_truncate),
    _network_driver("rbd", ("pool", "image", "conf", "snapshot", "user", "server",
                            "password-secret", "filename"), has_get_info=True,
                    truncate=sim_truncate, internal_snapshots=True),
    _network_driver("gluster", ("server", "volume", "path", "debug", "logfile",
                                "filename"), truncate=sim_truncate),
    _network_driver("sheepdog", ("server", "vdi", "snap-id", "tag", "filename"),
                    truncate=sim_truncate, internal_snapshots=True),
    _network_driver("ssh", ("server", "path", "user", "host-key-check", "host", "port",
                            "host_key_check", "filename")),
    _network_driver("nfs", ("server", "path", "user", "group", "tcp-syn-count",
                            "readahead-size", "page-cache-size", "debug", "filename"),
                    truncate=sim_truncate),
    _network_driver("vxhs", ("vdisk-id", "server", "tls-creds", "filename")),
    _network_driver("http", CURL_KEYS, url=True, needs_filename=False),
    _network_driver("https", CURL_KEYS, url=True),
    _network_driver("ftp", CURL_KEYS, url=True),
    _network_driver("ftps", CURL_KEYS, url=True),
)
