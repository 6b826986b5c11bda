"""The NBD server and client of the block layer.

`codec` is the protocol as QEMU 2.11 speaks it (pure, sans-I/O), `server` the
exports and clients of the NBD server (pure), `commands` the QMP commands
nbd-server-start/-add/-stop, `edge` the trio listener and connections, `client`
the `nbd` block driver's connection to a server.
"""
