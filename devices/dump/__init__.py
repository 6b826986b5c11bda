"""devices.dump: what the machine writes to files on request.

`ppm` (screendump's image), `elf` and `kdump` (the ELF and kdump-zlib cores of
dump-guest-memory, pure), `job` (the dump as a time-driven model with its query-dump
progress), `files` (qemu_open as a Protocol) and `commands` (the QMP handlers, which
open the files the commands name).
"""
