"""QMP error classes, one exception per class of QEMU 2.11's `QapiErrorClass`.

Models raise these; the monitor renders them as
`{"error": {"class": ..., "desc": ...}}`. A `desc` is always QEMU's own wording
(reference notes or QEMU's source); it carries no hint lines and no trailing newline.
"""

from __future__ import annotations

from typing import ClassVar


class QMPError(Exception):
    """An error a QMP command answers with. Subclasses fix the error class."""

    error_class: ClassVar[str] = "GenericError"

    def __init__(self, desc: str) -> None:
        super().__init__(desc)
        self.desc = desc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.desc!r})"


class GenericError(QMPError):
    error_class = "GenericError"


class CommandNotFound(QMPError):
    error_class = "CommandNotFound"


class DeviceNotActive(QMPError):
    error_class = "DeviceNotActive"


class DeviceNotFound(QMPError):
    error_class = "DeviceNotFound"


class KVMMissingCap(QMPError):
    error_class = "KVMMissingCap"


# The fixed texts of QEMU's include/qapi/qmp/qerror.h that several layers share.
QERR_MISSING_PARAMETER = "Parameter '%s' is missing"
QERR_INVALID_PARAMETER_TYPE = "Invalid parameter type for '%s', expected: %s"
QERR_INVALID_PARAMETER_VALUE = "Parameter '%s' expects %s"
QERR_INVALID_PARAMETER = "Invalid parameter '%s'"
QERR_DEVICE_HAS_NO_MEDIUM = "Device '%s' has no medium"
QERR_DEVICE_IN_USE = "Device '%s' is in use"
QERR_FEATURE_DISABLED = "The feature '%s' is not enabled"
QERR_IO_ERROR = "An IO error has occurred"
QERR_BASE_NOT_FOUND = "Base '%s' not found"
QERR_UNSUPPORTED = "this feature or command is not currently supported"
QERR_MIGRATION_ACTIVE = "There's a migration process in progress"
QERR_JSON_PARSING = "Invalid JSON syntax"
