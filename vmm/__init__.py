"""vmm: the virtual machine monitor layer.

Composes the subsystems (`schema`, `blockdev`, `devices`, `migration`) into a Machine,
and serves it: the QMP protocol, the dispatcher, the trio server, the human monitor and
QEMU's command line.
"""
