"""HMP's chardev commands and the guest-side frontends (hmp.c hmp_info_chardev,
hmp_chardev_add, hmp_chardev_change, hmp_ringbuf_write, hmp_ringbuf_read;
hw/char/virtio-console.c set_guest_connected; qga/commands.c qmp_guest_sync,
qmp_guest_ping; devices.md §4.3-§4.5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devices.chardev.frontends import AGENT_NAME, RingFrontend, VirtioSerialPort, agent_replies
from tests.emulator import SyncVm


@pytest.fixture
def vm() -> Any:
    machine = SyncVm(["-machine", "pc", "-nodefaults"])
    yield machine
    machine.vm.close()


def hmp(vm: SyncVm, line: str) -> str:
    reply = vm.execute({"execute": "human-monitor-command",
                        "arguments": {"command-line": line}})
    assert reply is not None and "return" in reply, reply
    return str(reply["return"])


def test_hmp_chardev_add_and_info(vm: SyncVm, tmp_path: Path) -> None:
    """hmp_chardev_add parses -chardev syntax; info chardev prints label and filename."""
    assert hmp(vm, "chardev-add ringbuf,id=r0,size=8") == ""
    assert hmp(vm, f"chardev-add socket,id=s0,path={tmp_path}/s.sock,server,nowait") == ""
    assert hmp(vm, "info chardev") == (
        "r0: filename=ringbuf\r\n"
        f"s0: filename=disconnected:unix:{tmp_path}/s.sock,server\r\n")


def test_hmp_chardev_add_errors(vm: SyncVm) -> None:
    """qemu_chr_parse_opts and the backends' parse errors [chardev/char*.c]."""
    assert hmp(vm, "chardev-add file,id=f0") == "chardev: file: no filename given\r\n"
    assert hmp(vm, "chardev-add socket,id=s0") == "chardev: socket: no host given\r\n"
    assert hmp(vm, "chardev-add socket,id=s0,host=localhost") == \
        "chardev: socket: no port given\r\n"
    assert hmp(vm, "chardev-add id=x0") == 'chardev: "x0" missing backend\r\n'
    assert hmp(vm, "chardev-add ringbuf,id=r0,size=3") == \
        "size of ringbuf chardev must be power of two\r\n"


def test_hmp_chardev_change(vm: SyncVm) -> None:
    """hmp.c hmp_chardev_change: an id inside the options is refused."""
    hmp(vm, "chardev-add null,id=n0")
    assert hmp(vm, "chardev-change n0 ringbuf,id=x") == "Unexpected 'id' parameter\r\n"
    assert hmp(vm, "chardev-change n0 ringbuf") == ""
    assert hmp(vm, "info chardev") == "n0: filename=ringbuf\r\n"


def test_hmp_ringbuf(vm: SyncVm) -> None:
    """hmp_ringbuf_write/hmp_ringbuf_read on the ringbuf model (devices.md §4.4)."""
    hmp(vm, "chardev-add ringbuf,id=r0,size=8")
    assert hmp(vm, "ringbuf_write r0 hello-world") == ""
    assert hmp(vm, "ringbuf_read r0 100") == "lo-world\r\n"
    assert hmp(vm, "ringbuf_read nope 1") == "Device 'nope' not found\r\n"


def test_chardev_change_swaps_under_a_frontend(vm: SyncVm) -> None:
    """qmp_chardev_change with a frontend that supports hotswap: the frontend writes
    to the new backend; without hotswap: "Chardev user does not support chardev
    hotswap" (devices.md §4.3)."""
    chardevs = vm.vm.chardevs
    vm.execute({"execute": "chardev-add", "arguments": {
        "id": "c0", "backend": {"type": "ringbuf", "data": {"size": 8}}}})
    frontend = RingFrontend()
    frontend.attach(chardevs, "c0")
    reply = vm.execute({"execute": "chardev-change", "arguments": {
        "id": "c0", "backend": {"type": "ringbuf", "data": {"size": 16}}}})
    assert reply == {"return": {}}
    frontend.write(b"0123456789")
    assert vm.execute({"execute": "ringbuf-read", "arguments": {
        "device": "c0", "size": 100}}) == {"return": "0123456789"}
    frontend.hotswap = False
    reply = vm.execute({"execute": "chardev-change", "arguments": {
        "id": "c0", "backend": {"type": "null", "data": {}}}})
    assert reply == {"error": {"class": "GenericError",
                               "desc": "Chardev user does not support chardev hotswap"}}


def test_vserport_change_on_guest_open(vm: SyncVm) -> None:
    """devices.md §4.5: VSERPORT_CHANGE {"id", "open"} when the guest opens or closes a
    port with an id; none for a port without one."""
    vm.execute({"execute": "chardev-add", "arguments": {
        "id": "ga", "backend": {"type": "ringbuf", "data": {}}}})
    port = VirtioSerialPort(events=vm.machine, port_id="port0", name=AGENT_NAME)
    port.attach(vm.vm.chardevs, "ga")
    vm.vm.guest_ports.add_port(port)
    vm.events.clear()
    port.set_guest_connected(True)
    assert [(e.name, e.data) for e in vm.events] == [
        ("VSERPORT_CHANGE", {"id": "port0", "open": True})]
    chardevs = {c["label"]: c for c in vm.execute({"execute": "query-chardev"})["return"]}
    assert chardevs["ga"]["frontend-open"] is True
    anonymous = VirtioSerialPort(events=vm.machine, port_id=None, name="other")
    anonymous.set_guest_connected(True)
    assert len(vm.events) == 1


def test_guest_agent_answers_its_handshake(vm: SyncVm) -> None:
    """qga: guest-sync echoes the id, guest-sync-delimited puts 0xFF first,
    guest-ping returns {}, guest-info lists the commands; a 0xFF resets the parser."""
    buffer = bytearray(b'\xff{"execute":"guest-sync","arguments":{"id":1234}}'
                       b'{"execute":"guest-ping"}{"execute":"guest-sync-delimited",'
                       b'"arguments":{"id":7}}{"execute":"guest-inf')
    replies = agent_replies(buffer)
    assert replies == [b'{"return": 1234}\n', b'{"return": {}}\n', b'\xff{"return": 7}\n']
    assert buffer == bytearray(b'{"execute":"guest-inf')
    buffer += b'o"}'
    (info,) = agent_replies(buffer)
    assert info.startswith(b'{"return": {"version": "2.11.0", "supported_commands": [')


def test_guest_agent_behaviour_over_a_chardev(tmp_path: Path) -> None:
    """--emu-behaviour=guest-agent=on: when the guest runs, the agent's port opens
    (VSERPORT_CHANGE) and answers what the host writes to the chardev."""
    machine = SyncVm(["-machine", "pc", "-nodefaults", "-S",
                      "--emu-behaviour=guest-agent=on"])
    try:
        machine.execute({"execute": "chardev-add", "arguments": {
            "id": "qga0", "backend": {"type": "ringbuf", "data": {}}}})
        port = VirtioSerialPort(events=machine.machine, port_id="channel0", name=AGENT_NAME)
        port.attach(machine.vm.chardevs, "qga0")
        machine.vm.guest_ports.add_port(port)
        machine.events.clear()
        machine.execute({"execute": "cont"})
        assert ("VSERPORT_CHANGE", {"id": "channel0", "open": True}) in \
            [(e.name, e.data) for e in machine.events]
        chardev = machine.vm.chardevs.find("qga0")
        assert chardev is not None
        chardev.deliver(b'{"execute":"guest-ping"}')
        assert machine.execute({"execute": "ringbuf-read", "arguments": {
            "device": "qga0", "size": 100}}) == {"return": '{"return": {}}\n'}
    finally:
        machine.vm.close()


def test_command_line_mux_and_pty_message(capsys: pytest.CaptureFixture[str]) -> None:
    """chardev/char.c qemu_chr_new_from_opts: mux=on makes "<id>-base" and a mux on
    it (the base is busy); char-pty.c prints where a pty went."""
    machine = SyncVm(["-machine", "pc", "-nodefaults", "-chardev", "ringbuf,id=m0,mux=on",
                      "-serial", "pty"])
    try:
        found = {c["label"]: c["filename"]
                 for c in machine.execute({"execute": "query-chardev"})["return"]}
        assert found["m0-base"] == "ringbuf" and found["m0"] == "mux"
        assert machine.execute({"execute": "chardev-remove", "arguments": {
            "id": "m0-base"}}) == {"error": {"class": "GenericError",
                                            "desc": "Chardev 'm0-base' is busy"}}
        err = capsys.readouterr().err
        assert err.endswith(f": char device redirected to {found['serial0'][4:]} "
                            "(label serial0)\n")
    finally:
        machine.vm.close()


def test_command_line_chardev_error() -> None:
    """vl.c chardev_init_func: the error at the option's location."""
    from vmm.cmdline import CommandLineError

    with pytest.raises(CommandLineError) as refused:
        SyncVm(["-machine", "none", "-nodefaults", "-chardev", "ringbuf,id=r,size=3"])
    assert "size of ringbuf chardev must be power of two" in str(refused.value)


class FakeDevice:
    """What the resolvers read of a qdev Device (typename, id, path, props)."""

    def __init__(self, typename: str, ident: str | None, props: dict[str, Any]) -> None:
        self.typename = typename
        self.id = ident
        self.path = f"/machine/peripheral/{ident}"
        self.props = props


def test_chardev_resolver_texts(vm: SyncVm) -> None:
    """hw/core/qdev-properties-system.c set_chr and chardev/char-fe.c qemu_chr_fe_init:
    the two property errors; release lets the chardev be removed."""
    from devices.chardev.resolver import ChardevResolver

    resolver = ChardevResolver(vm.vm.chardevs, vm.vm.guest_ports, vm.machine)
    vm.execute({"execute": "chardev-add", "arguments": {
        "id": "c0", "backend": {"type": "null", "data": {}}}})
    with pytest.raises(Exception) as missing:
        resolver.claim(None, FakeDevice("isa-serial", "s0", {}), "isa-serial", "chardev",
                       "zz")
    assert str(missing.value) == "Property 'isa-serial.chardev' can't find value 'zz'"
    dev = FakeDevice("virtserialport", "p0", {"name": AGENT_NAME})
    claimed = resolver.claim(None, dev, "virtserialport", "chardev", "c0")
    with pytest.raises(Exception) as taken:
        resolver.claim(None, FakeDevice("isa-serial", "s1", {}), "isa-serial", "chardev",
                       "c0")
    assert str(taken.value) == ("Property 'isa-serial.chardev' can't take value 'c0': "
                                "Device 'c0' is in use")
    assert claimed.port_name() == AGENT_NAME
    resolver.release(None, dev, "chardev", claimed)
    assert vm.execute({"execute": "chardev-remove", "arguments": {"id": "c0"}}) == \
        {"return": {}}


def test_netdev_resolver(vm: SyncVm) -> None:
    """set_netdev's texts through the resolver; release frees the backend."""
    from devices.net.resolver import NetdevResolver

    resolver = NetdevResolver(lambda: vm.vm.net)
    vm.execute({"execute": "netdev_add", "arguments": {"type": "user", "id": "u0"}})
    dev = FakeDevice("virtio-net-pci", "net0", {})
    nic = resolver.claim(None, dev, "virtio-net-device", "netdev", "u0")
    with pytest.raises(Exception) as taken:
        resolver.claim(None, FakeDevice("e1000", "e0", {}), "e1000", "netdev", "u0")
    assert str(taken.value) == "Property 'e1000.netdev' can't take value 'u0', it's in use"
    assert [f["name"] for f in vm.execute({"execute": "query-rx-filter"})["return"]] == \
        ["net0"]
    resolver.release(None, dev, "netdev", nic)
    resolver.claim(None, FakeDevice("e1000", "e0", {}), "e1000", "netdev", "u0")


def test_hmp_chardev_add_socket_families(vm: SyncVm) -> None:
    """qemu_chr_parse_socket keeps ipv4=/ipv6= in the address, and the listener asks
    util/qemu-sockets.c inet_ai_family_from_address: both off is its error; ipv4=on
    listens on IPv4 (the filename shows the bound address)."""
    assert hmp(vm, "chardev-add socket,id=s0,host=127.0.0.1,port=0,server,nowait,"
                   "ipv4=off,ipv6=off") == "Cannot disable IPv4 and IPv6 at same time\r\n"
    assert hmp(vm, "chardev-add socket,id=s1,host=,port=0,server,nowait,ipv4=on") == ""
    assert hmp(vm, "info chardev").startswith("s1: filename=disconnected:tcp:0.0.0.0:")
