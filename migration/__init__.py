"""migration: the migration state machine (pure model) and its stream transport.

Depends on `schema` at most; `vmm` composes it into the Machine.
"""
