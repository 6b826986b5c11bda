"""How QEMU 2.11 reports a command-line problem, as values.

Layer: vmm, pure (no I/O, no trio). Raised and collected by `vmm.cmdline`;
the program's entry point renders them on stderr.

QEMU prints through `error_report()` (util/qemu-error.c): an optional
ISO 8601 timestamp when `-msg timestamp=on` is in effect, the program name,
the *location* (the command-line words being processed, e.g. `-m 12x`),
then the message; `error_report_err()` appends the error's hint verbatim.
A few paths print with bare `fprintf`/`printf` instead (no program name,
no location); `Diagnostic.prefixed` is false for those.
"""

from __future__ import annotations

import attrs

from schema.opts.qemuopts import Location


@attrs.frozen
class Diagnostic:
    """One message QEMU would print while processing its command line."""

    message: str
    location: Location = ()
    hint: str = ""
    prefixed: bool = True
    timestamp: bool = False
    warning: bool = False
    #: QEMU printed it with printf (stdout) rather than on stderr.
    stdout: bool = False

    @property
    def text(self) -> str:
        """The message with its location, without program name or hint."""
        loc = " ".join(self.location)
        body = f"warning: {self.message}" if self.warning else self.message
        return f"{loc}: {body}" if self.location else body

    def render(self, progname: str, timestamp: str | None = None) -> str:
        """The exact bytes QEMU writes to stderr (newline-terminated).

        `timestamp` is the `g_time_val_to_iso8601` text of "now"; it is
        printed only when `-msg timestamp=on` was in effect.
        """
        if not self.prefixed:
            return self.message + self.hint
        stamp = f"{timestamp} " if self.timestamp and timestamp else ""
        return f"{stamp}{progname}: {self.text}\n{self.hint}"


class CommandLineError(Exception):
    """QEMU would print `diagnostic` and exit with `exit_status`.

    `str(error)` is the message with its location and without the program
    name, e.g. ``-m 12x: Parameter 'size' expects a non-negative number
    below 2^64``; print it as ``f"{progname}: {error}"`` followed by
    `error.hint`, or use `error.render(progname)`.
    """

    def __init__(
        self,
        diagnostic: Diagnostic,
        exit_status: int = 1,
        earlier: tuple[Diagnostic, ...] = (),
    ) -> None:
        super().__init__(diagnostic.text)
        self.diagnostic = diagnostic
        self.exit_status = exit_status
        #: What QEMU printed before this (warnings, a first error line).
        self.earlier = earlier

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return (*self.earlier, self.diagnostic)

    @property
    def message(self) -> str:
        return self.diagnostic.text

    @property
    def hint(self) -> str:
        return self.diagnostic.hint

    def render(self, progname: str, timestamp: str | None = None) -> str:
        """Everything QEMU writes to stderr before exiting."""
        return "".join(d.render(progname, timestamp) for d in self.diagnostics)
