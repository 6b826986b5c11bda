"""QEMU 2.11's block drivers as the graph sees them: capabilities, options, open.

Pure part of the `blockdev` layer, above the graph's objects (`blockdev.graph`, where
the driver interface `DriverSpec` and the `DriverContext` a driver's open receives
are declared) and below `bdrv_open` (`blockdev.open`). Every driver of the
BlockdevDriver enum is here [block/*.c BlockDriver definitions], by kind:

* `protocol`: `file`, `host_device`, `host_cdrom` open the real path (`Could not
  open '<f>': <strerror>`) and lock it as file-posix does; `null-co`/`null-aio` and
  `vvfat` are simulated;
* `formats`: `raw`, `qcow2`, `qcow`, `vmdk`, `vpc`, `vdi`, `vhdx`, `qed`, `luks` (and
  the read-only formats) read their real header through their `file` child;
* `network`: `nbd`, `iscsi`, `rbd`, `gluster`, `sheepdog`, `ssh`, `nfs`, `vxhs` and the
  curl protocols are simulated: their options are checked as the driver's open
  function checks them, their target is never contacted;
* `filters`: `throttle`, `blkdebug`, `blkverify`, `quorum`, `replication`;
* `base` holds what they share (driver state, the byte view of a node), `registry`
  the table by name and `bdrv_find_protocol`.

A driver's `open` receives the node's remaining (flattened) options, takes the ones
it knows, and leaves the rest for bdrv_open_inherit's "does not support the option"
check. Errors carry QEMU's text; a bare errno failure is worded by the caller
(`Could not open '<filename>': <strerror>`). Real files are reached only through the
image edge (`blockdev.image.io`) the context provides.
"""
