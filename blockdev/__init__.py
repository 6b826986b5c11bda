"""blockdev: the block layer (pure models of the graph, plus its real-file I/O modules).

Depends on `schema` at most; `vmm` composes it into the Machine.
"""
