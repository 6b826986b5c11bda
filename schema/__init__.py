"""schema: QEMU's QAPI schema as data.

The lowest layer of the emulator; it depends on nothing else of ours. It parses QAPI
schema files (the 2.11 dialect and the 1.x one), checks and resolves them into one
model, and every other piece reads that model: the argument visitor
(`schema.visitor`), the introspection reply (`Schema.introspection`), the
reply/event checker (`schema.output`), the Hypothesis strategies
(`schema.strategies`, not imported here, so a server never loads Hypothesis). The
schema is a value that callers load and pass around, never a module global.

Two subpackages hold the QEMU utilities every layer shares, one copy each:
`schema.qobject` (QEMU's JSON dialect: reader with its limits, writer, QDict order)
and `schema.opts` (QEMU's option syntax: C number conversions, QemuOpts, keyval).
"""

from schema.errors import (
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
    GenericError,
    KVMMissingCap,
    QMPError,
)
from schema.loader import DEFAULT_PERSONA, PERSONAS, load_schema
from schema.model import Command, Event, Schema
from schema.source import QAPIError

__all__ = [
    "DEFAULT_PERSONA",
    "PERSONAS",
    "Command",
    "CommandNotFound",
    "DeviceNotActive",
    "DeviceNotFound",
    "Event",
    "GenericError",
    "KVMMissingCap",
    "QAPIError",
    "QMPError",
    "Schema",
    "load_schema",
]
