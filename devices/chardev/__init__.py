"""devices.chardev: QEMU's character devices, the backends monitors, serial ports,
virtio-serial ports and `chardev-add` sit on.

`model` is pure: the backend configuration read from `-chardev` options
(`backend_from_opts`), the filenames QEMU shows, and the machine's chardevs
(`Chardevs`: create/remove/change, the ring buffer, the frontend lookup API). The
host side is real I/O in two edges: `hostio` (synchronous: it opens files, pipes,
ptys, sockets and serial devices when a chardev is created) and `edge` (trio: it
binds the monitors' sockets and waits on every chardev's descriptors). `commands`
holds the QMP handlers, `frontends` the guest side (a serial console, virtio-serial
ports with the guest agent), `ports` the machine's ports and their behaviours, and
`resolver` what qdev calls for a device's `chardev=`. The model never imports the
edges.
"""
