"""The VNC displays of a machine, as `-vnc` / `-display vnc=` configure them.

Pure model of `devices.display` [ui/vnc.c vnc_display_find, vnc_display_password,
vnc_display_open; qmp.c qmp_change_vnc_password]. A display has an id
(`default`, `vnc2`, ... or `-vnc ...,id=`), its `-vnc` options, and the password
of VNC password authentication. Without a display (QEMU started without `-vnc`)
a password cannot be set and a display cannot be reopened, with QEMU's errors.
Nothing listens here: the RFB server will be an edge module that serves what this
model holds.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from schema.errors import GenericError

# include/qapi/qmp/qerror.h
QERR_SET_PASSWD_FAILED = "Could not set password"


@attrs.define(kw_only=True)
class VncDisplay:
    """One VNC display (ui/vnc.c VncDisplay)."""

    id: str
    options: Mapping[str, str] = attrs.Factory(dict)  # the -vnc options, last value of each
    password: str | None = None

    @property
    def password_auth(self) -> bool:
        """`password=on`: VNC_AUTH_VNC; otherwise VNC_AUTH_NONE (no TLS/SASL here)."""
        return self.options.get("password") == "on"


@attrs.define(kw_only=True)
class VncDisplays:
    """The displays of one machine, in creation order (ui/vnc.c vnc_displays)."""

    displays: list[VncDisplay] = attrs.Factory(list)

    def find(self, ident: str | None) -> VncDisplay | None:
        """vnc_display_find: the first display without an id, else by id."""
        if ident is None:
            return self.displays[0] if self.displays else None
        return next((d for d in self.displays if d.id == ident), None)

    def set_password(self, password: str, ident: str | None = None) -> None:
        """qmp_change_vnc_password / vnc_display_password: no display, or one
        without password authentication, cannot take a password."""
        display = self.find(ident)
        if display is None or not display.password_auth:
            raise GenericError(QERR_SET_PASSWD_FAILED)
        display.password = password

    def reopen(self, ident: str, options: Mapping[str, str]) -> None:
        """vnc_display_open after qmp_change_vnc_listen parsed new options: the
        display closes and takes them."""
        display = self.find(ident)
        if display is None:
            raise GenericError("VNC display not active")
        display.options = dict(options)
