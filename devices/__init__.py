"""devices: the QOM tree, device models, chardevs and netdevs (pure models).

Depends on `schema` at most; `vmm` composes it into the Machine. What a device
needs from the block layer it declares as a Protocol (`devices.backends`).

* `qom` (the object tree: properties, child<>/link<>, path lookup), `qdev`
  (devices and buses, device_add/device_del, and the hooks other device models
  register: `DeviceKind`, `BackendResolver`, `UnplugStyle`), `props` (qdev property
  setters, class defaults), `pci` (slots, functions, query-pci), `usb` (ports), `board` (the pc and
  q35 boards' devices in QEMU's order, and their QOM tree), `qtree` (`info qtree`
  printed from the qdev model), `objects` (object-add's
  user-creatable objects), `commands` (the QMP commands of the tree and of qdev);
  `blockdevs` (the block device models, block.md §6), `backends` (the BlockBackend
  calls they make);
* `address_space` (guest RAM and the I/O port space, as QEMU's memory API
  dispatches accesses), `chipset` (each board's RAM layout and the port devices a
  guest resets, powers off, suspends or panics the machine with), `host` (what
  those devices need from the Machine);
* `chardev/`: the chardev backends (`model`) and their trio edge (`edge`);
* `display/`: the displays (`vnc`: the VNC displays `change vnc` acts on).
"""
