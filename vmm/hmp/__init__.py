"""vmm.hmp: the human monitor: QEMU 2.11's command table and texts, and its line editor.

`interpreter` (parses and runs one command line, calling QMP handlers by schema
name; the state a machine's monitors share), `args` (monitor.c's argument parser and
expressions), `table` (every command of hmp-commands.hx and hmp-commands-info.hx),
`commands` (the machine core's commands), `block` (the block layer's, with
block/qapi.c's texts), `savevm` (VM snapshots on the images' internal snapshots),
`memory` (the guest memory and port commands), `qtree` (info qtree), `readline` (util/readline.c's echo
and editing, as seen on the wire).
"""
