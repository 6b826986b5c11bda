"""devices.dump: what the machine writes to files on request.

`ppm` (screendump's image), `elf` (the ELF core of dump-guest-memory, pure),
`job` (the dump as a time-driven model with its query-dump progress) and `commands`
(the QMP handlers, which open the files the commands name).
"""
