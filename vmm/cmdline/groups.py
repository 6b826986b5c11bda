"""The QemuOpts groups of a QEMU 2.11 x86_64 binary (its `vm_config_groups`).

Layer: vmm, pure (no I/O, no trio). Used by `vmm.cmdline` to parse, and by
whoever answers `query-command-line-options`.

Each group's name, implied key, merge flag and parameters (in declaration
order, with their types) come from the QemuOptsList definitions in QEMU
2.11.0 (vl.c, chardev/char.c, monitor.c, qdev-monitor.c, net/net.c,
numa.c, blockdev.c, ui/vnc.c, ui/spice-core.c, fsdev/qemu-fsdev-opts.c,
hw/acpi/core.c, hw/smbios/smbios.c, block/iscsi-opts.c, trace/control.c)
and were checked against the real binary's `query-command-line-options`
reply in schema/data/qemu-2.11.0-x86_64-probe.replies (which lists each
group's parameters in reverse).

Two groups parse with an empty list (anything goes) but are *reported*
with a list: `machine` (QEMU answers with util/qemu-config.c's static
machine_opts; properties are checked later by the machine) and `drive`
(the union of the lists `drive_new` checks later). `reported_params` keeps
what the real binary answers.
"""

from __future__ import annotations

import attrs

from schema.opts.qemuopts import OptParam, OptsList, OptType

_TYPES = {"s": OptType.STRING, "b": OptType.BOOL, "n": OptType.NUMBER, "z": OptType.SIZE}


def _params(spec: str) -> tuple[OptParam, ...]:
    """`"name:s other:b"` -> parameters (s string, b bool, n number, z size)."""
    out = []
    for word in spec.split():
        name, _, kind = word.rpartition(":")
        out.append(OptParam(name, _TYPES[kind]))
    return tuple(out)


_THROTTLE = (
    "throttling.iops-total:n throttling.iops-read:n throttling.iops-write:n "
    "throttling.bps-total:n throttling.bps-read:n throttling.bps-write:n "
    "throttling.iops-total-max:n throttling.iops-read-max:n throttling.iops-write-max:n "
    "throttling.bps-total-max:n throttling.bps-read-max:n throttling.bps-write-max:n "
    "throttling.iops-total-max-length:n throttling.iops-read-max-length:n "
    "throttling.iops-write-max-length:n throttling.bps-total-max-length:n "
    "throttling.bps-read-max-length:n throttling.bps-write-max-length:n throttling.iops-size:n"
)


@attrs.frozen
class GroupInfo:
    """A group plus what `query-command-line-options` reports for it."""

    list: OptsList
    reported_params: tuple[OptParam, ...] | None = None

    @property
    def query_params(self) -> tuple[OptParam, ...]:
        return self.list.params if self.reported_params is None else self.reported_params


def _g(
    name: str,
    spec: str = "",
    implied: str | None = None,
    merge: bool = False,
    reported: str | None = None,
    extension: bool = False,
) -> GroupInfo:
    return GroupInfo(
        OptsList(name, _params(spec), implied, merge, extension),
        None if reported is None else _params(reported),
    )


#: In the order of the real binary's query-command-line-options reply.
GROUP_INFO: tuple[GroupInfo, ...] = (
    _g(
        "iscsi",
        "user:s password:s password-secret:s header-digest:s initiator-name:s timeout:n",
    ),
    _g(
        "vnc",
        "vnc:s websocket:s tls-creds:s x509:s share:s display:s head:n connections:n to:n "
        "ipv4:b ipv6:b password:b reverse:b lock-key-sync:b key-delay-ms:n sasl:b tls:b "
        "x509verify:s acl:b lossy:b non-adaptive:b",
        implied="vnc",
    ),
    _g(
        "spice",
        "port:n tls-port:n addr:s ipv4:b ipv6:b unix:b password:s disable-ticketing:b "
        "disable-copy-paste:b disable-agent-file-xfer:b sasl:b x509-dir:s x509-key-file:s "
        "x509-key-password:s x509-cert-file:s x509-cacert-file:s x509-dh-key-file:s "
        "tls-ciphers:s tls-channel:s plaintext-channel:s image-compression:s "
        "jpeg-wan-compression:s zlib-glz-wan-compression:s streaming-video:s agent-mouse:b "
        "playback-compression:b seamless-migration:b display:s head:n gl:b rendernode:s",
    ),
    _g("smbios"),
    _g("acpi", implied="data"),
    _g(
        "virtfs",
        "fsdriver:s path:s mount_tag:s security_model:s writeout:s readonly:b socket:s "
        "sock_fd:n fmode:n dmode:n",
        implied="fsdriver",
    ),
    _g(
        "fsdev",
        "fsdriver:s path:s security_model:s writeout:s readonly:b socket:s sock_fd:n "
        "fmode:n dmode:n " + _THROTTLE,
        implied="fsdriver",
    ),
    _g("fw_cfg", "name:s file:s string:s", implied="name"),
    _g("semihosting-config", "enable:b target:s arg:s", implied="enable"),
    _g(
        "icount",
        "shift:s align:b sleep:b rr:s rrfile:s rrsnapshot:s",
        implied="shift",
        merge=True,
    ),
    _g("numa", implied="type"),
    _g("name", "guest:s process:s debug-threads:b", implied="guest", merge=True),
    _g("msg", "timestamp:b"),
    _g("realtime", "mlock:b"),
    _g("tpmdev", implied="type"),
    _g("object", implied="qom-type"),
    _g("add-fd", "fd:n set:n opaque:s"),
    _g(
        "sandbox",
        "enable:b obsolete:s elevateprivileges:s spawn:s resourcecontrol:s",
        implied="enable",
    ),
    _g(
        "boot-opts",
        "order:s once:s menu:b splash:s splash-time:s reboot-timeout:s strict:b",
        implied="order",
        merge=True,
    ),
    _g(
        "smp-opts",
        "cpus:n sockets:n cores:n threads:n maxcpus:n",
        implied="cpus",
        merge=True,
    ),
    _g("memory", "size:z slots:n maxmem:z", implied="size", merge=True),
    _g("accel", "accel:s thread:s", implied="accel", merge=True),
    _g(
        "machine",
        implied="type",
        merge=True,
        reported="type:s accel:s kernel_irqchip:b kvm_shadow_mem:z kernel:s initrd:s append:s "
        "dtb:s dumpdtb:s phandle_start:n dt_compatible:s dump-guest-core:b mem-merge:b usb:b "
        "firmware:s iommu:b suppress-vmdesc:b aes-key-wrap:b dea-key-wrap:b loadparm:s",
    ),
    _g("option-rom", "bootindex:n romfile:s", implied="romfile"),
    _g("trace", "enable:s events:s file:s", implied="enable"),
    _g("mon", "mode:s chardev:s default:b pretty:b", implied="chardev"),
    _g("global", "driver:s property:s value:s"),
    _g("rtc", "base:s clock:s driftfix:s"),
    _g("net", implied="type"),
    _g("netdev", implied="type"),
    _g("device", implied="driver"),
    # `fd` (a socket a parent process opened and passed in) arrived in QEMU 2.12
    # ("chardev: support passing pre-opened socket FDs"); management tools that
    # pre-open the monitor socket pass it, so it is accepted as 2.12 accepts it.
    _g(
        "chardev",
        "backend:s path:s host:s port:s localaddr:s localport:s to:n ipv4:b ipv6:b wait:b "
        "server:b delay:b reconnect:n telnet:b tn3270:b tls-creds:s width:n height:n cols:n "
        "rows:n mux:b signal:b name:s debug:n size:z chardev:s append:b logfile:s logappend:b "
        "fd:s",
        implied="backend",
    ),
    _g(
        "drive",
        reported="node-name:s driver:s cache.direct:b cache.no-flush:b read-only:b discard:s "
        "force-share:b snapshot:b aio:s cache.writeback:b format:s werror:s "
        + _THROTTLE
        + " throttling.group:s detect-zeroes:s stats-account-invalid:b stats-account-failed:b "
        "bus:n unit:n index:n media:s if:s cyls:n heads:n secs:n trans:s boot:b addr:s "
        "serial:s file:s read-only:b rerror:s werror:s copy-on-read:b",
    ),
    # -overcommit arrived in QEMU 3.1 (vl.c qemu_overcommit_opts); management
    # tools pass it, so it is accepted with 3.1's syntax.  It is not part of
    # 2.11's query-command-line-options answer.
    _g("overcommit", "mem-lock:b cpu-pm:b", extension=True),
)

GROUPS: dict[str, OptsList] = {info.list.name: info.list for info in GROUP_INFO}
