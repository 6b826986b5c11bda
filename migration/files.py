"""Device-state files of xen-save-devices-state / xen-load-devices-state.

An I/O edge of the `migration` layer, synchronous (QEMU writes these files in the
main loop [migration/savevm.c qmp_xen_save_devices_state,
qmp_xen_load_devices_state]): `LocalFiles` satisfies `migration.host.FileAccess`;
errors are QEMU's `Unable to open PATH: strerror` [io/channel-file.c
qio_channel_file_new_path].
"""

from __future__ import annotations

import os

from schema.errors import GenericError


class LocalFiles:
    def write(self, path: str, data: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o660)
        except OSError as err:
            raise GenericError(f"Unable to open {path}: {os.strerror(err.errno or 0)}") \
                from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, data)
        finally:
            os.close(fd)

    def read(self, path: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as err:
            raise GenericError(f"Unable to open {path}: {os.strerror(err.errno or 0)}") \
                from None
