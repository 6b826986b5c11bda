"""blockdev: the block layer (pure models of the graph, plus its real-file I/O modules).

Depends on `schema` at most; `vmm` composes it into the Machine (`vmm.vm`).

* `layer` (BlockLayer: registries, bdrv_open, graph edits), `graph` (nodes, edges,
  BlockBackends, permissions), `drivers` (every BlockdevDriver), `options` (flat
  QDicts, QemuOpts), `names`;
* `query`, `commands` (the QMP handlers), `media` (trays), `snapshot`, `throttle`,
  `bitmaps`, `guest_io` (guest I/O, errors, write thresholds), `drive` (-drive,
  -blockdev, DriveInfo), `host` (what the Machine provides), `device_ops` (what the
  block layer needs from an attached device, and the BlockBackend calls device
  models make: the block layer never imports `devices`);
* the I/O edge, `image/`: `image.io` (file nodes and format images for the graph),
  over `image.file`, `image.lock` and `image.formats` (headers, creation, OFD locks).
"""
