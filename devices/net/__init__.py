"""devices.net: QEMU's net clients (netdev backends, hubs, NICs' peers).

`model` is pure: the machine's net clients, hubs, NIC wiring, set_link,
query-rx-filter and `info network`. `commands` holds netdev_add (QemuOpts and the
OptsVisitor in QEMU's order, each backend's checks), netdev_del, set_link and
query-rx-filter. `resolver` is what qdev calls for a NIC's `netdev=`. `hostnet` is
the synchronous I/O edge (listening and connecting sockets, host forwarding rules,
passed descriptors, the bridge helper); the model asks for it through `NetHost`.
"""
