"""qdev property setters: a property's text (from -device, device_add, HMP) to its
value, with QEMU's texts.

Pure model of the `devices` layer [hw/core/qdev-properties.c set_bool, set_uintN,
set_intN, set_size, set_mac, set_pci_devfn, set_enum, error_set_from_qdev_prop_error;
qapi/string-input-visitor.c parse_type_int64, parse_type_bool, parse_type_size;
qapi/qapi-visit-core.c visit_type_uintN/intN]. `devices.qdev` applies them to the
properties a device type has (`schema.catalog`'s device-list-properties); a property
type not modelled here is kept as the text it was given. `default_value` is what an
unset property of a type the recorded boards lack holds (`CLASS_DEFAULTS`, else zero).
"""

from __future__ import annotations

import re
from typing import Any

from schema.errors import QERR_INVALID_PARAMETER, QERR_INVALID_PARAMETER_TYPE, GenericError
from schema.opts.cutils import Errno, qemu_strtoi64, qemu_strtosz

_UNSIGNED = {"uint8": 0xFF, "uint16": 0xFFFF, "uint32": 0xFFFFFFFF,
             "uint64": 0xFFFFFFFFFFFFFFFF, "uint4": 0xF}
_SIGNED = {"int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
           "int": (-(1 << 63), (1 << 63) - 1)}
ENUMS: dict[str, tuple[str, ...]] = {
    "OnOffAuto": ("auto", "on", "off"),
    "BlockdevOnError": ("report", "ignore", "enospc", "stop", "auto"),
    "LostTickPolicy": ("discard", "delay", "merge", "slew"),
    "FdcDriveType": ("144", "288", "120", "none", "auto"),
    "BiosAtaTranslation": ("auto", "none", "lba", "large", "rechs"),
}
_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def prop_value_bad(owner: str, prop: str, text: str) -> GenericError:
    """QERR_PROPERTY_VALUE_BAD (error_set_from_qdev_prop_error with EINVAL)."""
    return GenericError(f"Property '{owner}.{prop}' doesn't take value '{text}'")


def prop_bool(name: str, value: str) -> bool:
    """A boolean qdev property set from a -device string: object_property_parse's
    string input visitor (qapi/string-input-visitor.c parse_type_bool), which takes
    on/yes/true and off/no/false in any case."""
    word = value.lower()
    if word in ("on", "yes", "true"):
        return True
    if word in ("off", "no", "false"):
        return False
    raise GenericError(QERR_INVALID_PARAMETER_TYPE % (name, "boolean"))


def _int64(name: str, text: str) -> int:
    """parse_type_int64 of the string input visitor (a single value)."""
    err, value, _ = qemu_strtoi64(text)
    if err is not Errno.OK or not text:
        raise GenericError(f"Parameter '{name}' expects an int64 value or range")
    return value


def parse_devfn(owner: str, name: str, text: str) -> int:
    """set_pci_devfn: `slot[.fn]` in hex as sscanf's %x reads it (an optional 0x;
    slot <= 31, fn <= 7)."""
    m = re.fullmatch(r"\s*(?:0[xX])?([0-9a-fA-F]+)(?:\.\s*(?:0[xX])?([0-9a-fA-F]+))?", text)
    if m is None:
        raise prop_value_bad(owner, name, text)
    slot = int(m.group(1), 16)
    fn = int(m.group(2), 16) if m.group(2) is not None else 0
    if slot > 31 or fn > 7:
        raise prop_value_bad(owner, name, text)
    return slot << 3 | fn


def parse_prop(owner: str, name: str, type_: str, text: str, description: str = "",
               dev_id: str = "") -> Any:
    """object_property_parse of a qdev property of type `type_` on a device of type
    `owner` whose id is `dev_id` (the texts of the string input visitor and the qdev
    setters)."""
    if description.startswith("A power of two between 512 and 32768"):
        return _blocksize(name, text, dev_id)
    if type_ == "bool":
        return prop_bool(name, text)
    if name == "addr" and type_ == "int32" and description.startswith("Slot"):
        return parse_devfn(owner, name, text)
    if name in ("mac", "macaddr") and type_ == "str":
        if not _MAC.match(text):
            raise prop_value_bad(owner, name, text)
        return text.lower().replace("-", ":")
    if type_ in _UNSIGNED:
        value = _int64(name, text) & 0xFFFFFFFFFFFFFFFF
        limit = _UNSIGNED[type_]
        if type_ != "uint64" and value > limit:
            raise GenericError(f"Parameter '{name}' expects {type_}_t")
        return value
    if type_ in _SIGNED:
        value = _int64(name, text)
        lo, hi = _SIGNED[type_]
        if not lo <= value <= hi:
            raise GenericError(f"Parameter '{name}' expects {type_}_t")
        return value
    if type_ == "size":
        err, size = qemu_strtosz(text)
        if err is not Errno.OK:
            raise GenericError(f"Parameter '{name}' expects a size value")
        return size
    if type_ in ENUMS:
        if text not in ENUMS[type_]:
            raise GenericError(QERR_INVALID_PARAMETER % text)
        return text
    return text


def _blocksize(name: str, text: str, dev_id: str) -> int:
    """set_blocksize: 0 (unset) or a power of two in 512..32768; the texts name the
    device by its id (or nothing)."""
    value = _int64(name, text) & 0xFFFFFFFFFFFFFFFF
    if value > 0xFFFF:
        raise GenericError(f"Parameter '{name}' expects uint16_t")
    if value and not 512 <= value <= 32768:
        raise GenericError(f"Property {dev_id}.{name} doesn't take value {value} "
                           "(minimum: 512, maximum: 32768)")
    if value & (value - 1):
        raise GenericError(f"Property {dev_id}.{name} doesn't take value '{value}', it's "
                           "not a power of 2")
    return value


def zero_value(type_: str) -> Any:
    """The value of a property nobody set, where the catalogue records no default."""
    if type_ == "bool":
        return False
    if type_ in _UNSIGNED or type_ in _SIGNED or type_ == "size":
        return 0
    if type_ in ENUMS:
        return ENUMS[type_][0]
    return ""


# The default values of the qdev properties of classes the recorded boards do not
# have, where they are not zero (DEFINE_PROP_*'s default argument, and a PCI class's
# `romfile` that pci_qdev_realize takes when none is given), by the class that
# declares them [hw/pci/pci.c pci_props; hw/virtio/virtio-pci.c virtio_pci_properties,
# virtio_net_properties, virtio_net_pci_class_init; hw/virtio/virtio.c
# DEFINE_VIRTIO_COMMON_FEATURES; hw/net/virtio-net.c virtio_net_properties
# (TX_TIMER_INTERVAL, TX_BURST, the 256-entry queues); hw/block/virtio-blk.c
# virtio_blk_properties; hw/usb/bus.c usb_props;
# hw/usb/dev-hid.c; hw/usb/hcd-uhci.c uhci_properties_*].
_VIRTIO_NET_ON = ("csum", "guest_csum", "gso", "guest_tso4", "guest_tso6", "guest_ecn",
                  "guest_ufo", "guest_announce", "host_tso4", "host_tso6", "host_ecn",
                  "host_ufo", "mrg_rxbuf", "status", "ctrl_vq", "ctrl_rx", "ctrl_vlan",
                  "ctrl_rx_extra", "ctrl_mac_addr", "ctrl_guest_offloads")
CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "pci-device": {"addr": -1, "rombar": 1, "command_serr_enable": True,
                   "x-pcie-lnksta-dllla": True, "x-pcie-extcap-init": True},
    "virtio-pci": {"disable-legacy": "auto", "migrate-extra": True,
                   "x-pcie-deverr-init": True, "x-pcie-lnkctl-init": True,
                   "x-pcie-pm-init": True},
    "virtio-net-pci": {"ioeventfd": True, "vectors": 3, "romfile": "efi-virtio.rom"},
    "virtio-blk-pci": {"ioeventfd": True, "vectors": 2},
    "virtio-serial-pci": {"ioeventfd": True, "vectors": 2},
    # DEFINE_BLOCK_PROPERTIES and _ERROR_PROPERTIES (include/hw/block/block.h); the
    # block sizes as blkconf_blocksizes leaves them on a 512-byte-sector backend
    "virtio-blk-device": {"logical_block_size": 512, "physical_block_size": 512,
                          "discard_granularity": 0xFFFFFFFF, "write-cache": "auto",
                          "rerror": "auto", "werror": "auto", "config-wce": True,
                          "request-merging": True, "num-queues": 1},
    "virtio-device": {"indirect_desc": True, "event_idx": True, "notify_on_empty": True,
                      "any_layout": True},
    "virtio-net-device": {**{name: True for name in _VIRTIO_NET_ON},
                          "x-txtimer": 150000, "x-txburst": 256, "rx_queue_size": 256,
                          "tx_queue_size": 256, "x-mtu-bypass-backend": True},
    "usb-device": {"full-path": True, "msos-desc": True},
    "usb-tablet": {"usb_version": 2},
    "usb-mouse": {"usb_version": 2},
    "usb-kbd": {"usb_version": 2},
    "pci-uhci-usb": {"bandwidth": 1280, "maxframes": 128},
}


def default_value(classes: tuple[str, ...], name: str, type_: str) -> Any:
    """The value of property `name` nobody set on an instance of the first of
    `classes` (the type, then its parents): its class's default, else zero."""
    for cls in classes:
        defaults = CLASS_DEFAULTS.get(cls)
        if defaults is not None and name in defaults:
            return defaults[name]
    return zero_value(type_)
