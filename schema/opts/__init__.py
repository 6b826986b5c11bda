"""QEMU's option syntax, one copy for every option string the emulator reads.

Part of the `schema` package (which depends on nothing else of ours), over
`schema.qobject` for the JSON form of an option argument:

* `cutils`: the C conversions QEMU's option parsing goes through (glibc's strtoll,
  strtoull, strtod; util/cutils.c's qemu_strtoi64, qemu_strtou64, qemu_strtosz), with
  their quirks;
* `qemuopts`: QemuOpts (util/qemu-option.c): option groups, `key=value,...` with `,,`
  quoting, the typed parameters (bool `on`/`off`, number, size) and their messages,
  qemu_opts_absorb_qdict for the block layer's flat QDicts;
* `keyval`: util/keyval.c's dotted keys, and the `{...}`-or-keyval argument of
  `-blockdev` and `-object` (qobject_input_visitor_new_str's reading half);
* `sockets`: util/qemu-sockets.c's address strings (socket_parse, inet_parse,
  vsock_parse) and SocketAddressLegacy's flattening, for NBD, HMP, migration's
  `tcp:` URIs, `nbd:` file names and the chardevs.

The command line (`vmm.cmdline`) parses `-drive`, `-device`, `-chardev`, `-netdev`,
`-object` and the rest with it, the block layer absorbs driver options with it, and
the argument visitor's keyval mode (`schema.visitor`) converts keyval strings with it.
"""
