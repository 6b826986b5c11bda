"""devices: the QOM tree, device models, chardevs and netdevs (pure models).

Depends on `schema` at most; `vmm` composes it into the Machine.
"""
