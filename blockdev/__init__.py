"""blockdev: the block layer (pure models of the graph, plus its real-file I/O modules).

Depends on `schema` at most; `vmm` composes it into the Machine (`vmm.vm`). Its
modules form layers, each importing only those below it (tests/test_block_imports.py
pins that the import graph has no cycle); a lower module that needs the layer gets a
narrow Protocol of it, never the whole `BlockLayer`:

* bottom: `graph` (nodes, edges, BlockBackends, the driver interface `DriverSpec`,
  permissions), with the value modules `bitmaps`, `throttle`, `names`, `options`
  (flat QDicts, QemuOpts), `host` (what the Machine provides), `device_ops` (what the
  block layer needs from an attached device, and the BlockBackend calls device models
  make: the block layer never imports `devices`);
* the I/O edge, `image/`: `image.io` (file handles and format images for the graph,
  image creation), over `image.file`, `image.lock` and `image.formats` (headers,
  creation, OFD locks);
* `drivers/` (every BlockdevDriver: protocol, formats, network, filters, registry),
  then `open` (bdrv_open with its option processing), `media` (trays) and `guest_io`
  (guest requests and the device error policy), `workload` (the guest's writes);
* the data path, loaded with the first request (never at start-up): `iotypes`
  (BlockIOError, BlockStatus, the driver interfaces), `io` (block/io.c and the I/O
  of block-backend.c: bdrv_*/blk_*), `accounting`, the drivers' callbacks
  (`drivers.dataio`, `drivers.format_io`, `drivers.blkdebug_io`,
  `drivers.passthrough`, `drivers.quorum_io`), and the one trio edge `io_edge`
  (a throttled request waits on the Machine's clock);
* `layer` (BlockLayer: registries, graph edits, BlockBackends, the machine's hooks);
* above it: `snapshot`, `query`, `commands` (the QMP handlers) and `drive` (-drive,
  -blockdev, DriveInfo).
"""
