"""vmm.hmp: the human monitor: QEMU's command table and texts, and its line editor.

`interpreter` (parses and runs one command line, calling QMP handlers by schema
name), `commands` (the command table and hmp.c's output formats), `readline`
(util/readline.c's echo and editing, as seen on the wire).
"""
