"""The legacy character-device syntax of `-serial`, `-monitor`, `-qmp`, ...

Layer: vmm, pure (no I/O, no trio). Used by `vmm.cmdline`; the chardev
options it produces are built into chardevs by the chardev subsystem.

QEMU 2.11's chardev/char.c `qemu_chr_parse_compat` turns a legacy
description into `-chardev` options under a given id (`compat_monitor0`,
`serial0`, ...):

=====================  =============================================
``mon:X``              X, plus ``mux=on`` (and ``signal=off`` for stdio)
``null`` ``pty``       ``backend=`` that word (also ``msmouse``,
``stdio``              ``wctablet``, ``braille``, ``testdev``)
``vc[:WxH|:CxR C]``    ``backend=vc`` (+ ``width/height`` or ``cols/rows``)
``con:``               ``backend=console``
``COM...``             ``backend=serial,path=COM...``
``file:P``             ``backend=file,path=P``
``pipe:P``             ``backend=pipe,path=P``
``tcp:H:P[,opts]``     ``backend=socket,host=H,port=P`` + opts
``telnet:H:P[,opts]``  same, ``telnet=on``; ``tn3270:`` ``tn3270=on``
``udp:[H]:P[@[H]:P]``  ``backend=udp,host,port[,localaddr,localport]``
``unix:PATH[,opts]``   ``backend=socket,path=PATH`` + opts
``/dev/parport*``      ``backend=parallel,path=`` (also ``/dev/ppi*``)
``/dev/...``           ``backend=serial,path=``
=====================  =============================================

Anything else is a parse error. Host and port are read with `sscanf`
(`%64[^:]:%32[^,]`), so a host of 65+ bytes fails and a port is cut at
32 bytes (silently dropping the options after it).
"""

from __future__ import annotations

from schema.opts.cutils import scan_set
from schema.opts.qemuopts import MutableOpts, OptsError, OptsList, OptsStore
from schema.opts.sockets import scan_host_port
from vmm.cmdline.errors import Location


class CompatError(Exception):
    """The description could not be converted.

    `reported` holds the error QEMU printed on the way (a bad id, a bad
    option after `tcp:h:p,`), if any; the caller adds its own message.
    """

    def __init__(self, reported: OptsError | None = None) -> None:
        super().__init__(reported.message if reported else "parse error")
        self.reported = reported


def _host_port(text: str, stop: str) -> tuple[str, str, int] | None:
    """`%64[^:]:%32[^<stop>]%n`, falling back to `:%32[^<stop>]%n`."""
    found = scan_host_port(text, 0, 64, ":", ":", stop)
    if found is not None:
        return found
    if text.startswith(":"):
        port, j = scan_set(text, 1, 32, stop, negate=True)
        if port is not None:
            return "", port, j
    return None


def _two_numbers(text: str, middle: str, suffix_needed: bool) -> tuple[str, str] | None:
    """`%7[0-9]<middle>%7[0-9]` (the trailing literal never matters to the count)."""
    first, i = scan_set(text, 0, 7, "0123456789", negate=False)
    if first is None or not text.startswith(middle, i):
        return None
    second, _ = scan_set(text, i + len(middle), 7, "0123456789", negate=False)
    if second is None:
        return None
    return first, second


def chr_parse_compat(
    store: OptsStore, chardev_list: OptsList, label: str, filename: str, location: Location
) -> MutableOpts:
    """qemu_chr_parse_compat: a new chardev QemuOpts with id `label`."""
    try:
        opts = store.create(chardev_list, label, True, location)
    except OptsError as exc:
        raise CompatError(exc) from None

    def put(name: str, value: str) -> None:
        store.opt_set(opts, name, value)

    def fail(reported: OptsError | None = None) -> CompatError:
        store.delete(opts)
        return CompatError(reported)

    if filename.startswith("mon:"):
        filename = filename[4:]
        put("mux", "on")
        if filename == "stdio":
            # Ctrl-C goes to the guest when the monitor shares stdio.
            put("signal", "off")

    if filename in ("null", "pty", "msmouse", "wctablet", "braille", "testdev", "stdio"):
        put("backend", filename)
        return opts
    if filename.startswith("vc"):
        put("backend", "vc")
        rest = filename[2:]
        if rest.startswith(":"):
            pixels = _two_numbers(rest[1:], "x", False)
            chars = _two_numbers(rest[1:], "Cx", True) if pixels is None else None
            if pixels is not None:
                put("width", pixels[0])
                put("height", pixels[1])
            elif chars is not None:
                put("cols", chars[0])
                put("rows", chars[1])
            else:
                raise fail()
        return opts
    if filename == "con:":
        put("backend", "console")
        return opts
    if filename.startswith("COM"):
        put("backend", "serial")
        put("path", filename)
        return opts
    for prefix, backend in (("file:", "file"), ("pipe:", "pipe")):
        if filename.startswith(prefix):
            put("backend", backend)
            put("path", filename[len(prefix) :])
            return opts
    for prefix in ("tcp:", "telnet:", "tn3270:"):
        if filename.startswith(prefix):
            rest = filename[len(prefix) :]
            parsed = _host_port(rest, ",")
            if parsed is None:
                raise fail()
            host, port, pos = parsed
            put("backend", "socket")
            put("host", host)
            put("port", port)
            if pos < len(rest) and rest[pos] == ",":
                try:
                    store.do_parse(opts, rest[pos + 1 :], None)
                except OptsError as exc:
                    raise fail(exc) from None
            if prefix == "telnet:":
                put("telnet", "on")
            elif prefix == "tn3270:":
                put("tn3270", "on")
            return opts
    if filename.startswith("udp:"):
        rest = filename[4:]
        put("backend", "udp")
        parsed = _host_port(rest, "@,")
        if parsed is None:
            raise fail()
        host, port, pos = parsed
        put("host", host)
        put("port", port)
        if pos < len(rest) and rest[pos] == "@":
            local = _host_port(rest[pos + 1 :], ",")
            if local is None:
                raise fail()
            put("localaddr", local[0])
            put("localport", local[1])
        return opts
    if filename.startswith("unix:"):
        put("backend", "socket")
        try:
            store.do_parse(opts, filename[5:], "path")
        except OptsError as exc:
            raise fail(exc) from None
        return opts
    if filename.startswith(("/dev/parport", "/dev/ppi")):
        put("backend", "parallel")
        put("path", filename)
        return opts
    if filename.startswith("/dev/"):
        put("backend", "serial")
        put("path", filename)
        return opts
    raise fail()
