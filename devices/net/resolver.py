"""The `netdev=` property of qdev NICs: peer the NIC with its backend.

Pure model of `devices.net`, the lookup API qdev calls (it satisfies
`devices.qdev.BackendResolver` structurally) [hw/core/qdev-properties-system.c
set_netdev: "can't find value", "it's in use"; net/net.c qemu_new_nic,
qemu_del_nic]. The NIC's net client is created when the property is set; virtio-net
NICs answer query-rx-filter. `NIC_DRIVER` is the guest behaviour of their driver
(`devices.net.model.NetClients.vm_start`), declared here to stay light at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schema.handlers import Behaviour, choice

if TYPE_CHECKING:
    from devices.net.model import NetClients

NIC_DRIVER = Behaviour(
    "nic-driver", "what the guest's virtio-net driver does when the guest runs: "
    "'filter' sets the receive filter as a Linux guest does (promiscuous off, the "
    "all-hosts multicast groups), so NIC_RX_FILTER_CHANGED follows",
    choice("off", "filter"), os="off", firmware="off")
NET_BEHAVIOURS = (NIC_DRIVER,)


class NetdevResolver:
    """qdev's resolver for `netdev=`."""

    def __init__(self, net: Callable[[], NetClients]) -> None:
        self.net = net

    def claim(self, qdev: Any, dev: Any, owner_type: str, prop: str, value: str) -> Any:
        mac = dev.props.get("mac")
        return self.net().attach_nic(
            model=dev.typename, typename=owner_type, netdev=value, device_id=dev.id,
            qom_path=dev.path, mac=str(mac) if mac is not None else None,
            rx_filter=owner_type.startswith("virtio-net"))

    def release(self, qdev: Any, dev: Any, prop: str, claimed: Any) -> None:
        self.net().detach_nic(claimed)
