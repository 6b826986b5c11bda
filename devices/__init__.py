"""devices: the QOM tree, device models, chardevs and netdevs (pure models).

Depends on `schema` at most; `vmm` composes it into the Machine. What a device
needs from the block layer it declares as a Protocol (`devices.backends`).

* `qdev` (creating, realizing and unplugging devices; today the block devices),
  `blockdevs` (the block device models, block.md §6), `board` (the devices a PC
  board creates for its -drives), `backends` (the BlockBackend calls they make);
* `address_space` (guest RAM and the I/O port space, as QEMU's memory API
  dispatches accesses), `chipset` (each board's RAM layout and the port devices a
  guest resets, powers off, suspends or panics the machine with), `host` (what
  those devices need from the Machine);
* `chardev/`: the chardev backends (`model`) and their trio edge (`edge`);
* `display/`: the displays (`vnc`: the VNC displays `change vnc` acts on).
"""
