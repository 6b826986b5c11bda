"""devices.chardev: QEMU's character devices, the backends monitors (and, later,
serial ports and `chardev-add`) sit on.

`model` is pure: the backend configuration read from `-chardev` options, and the
`filename` QEMU shows for a chardev. `edge` is the I/O edge (trio): it binds,
listens, connects and accepts as QEMU's socket and stdio chardevs do, and hands
the frontend (a monitor connection in `vmm.server`) a byte stream. The model never
imports the edge.
"""
