"""devices.display: the machine's displays, as far as QMP sees them (today: VNC).

Pure models: `console` (the picture), `vnc` (the displays and their clients), `rfb`
(the protocol) and `des` (VNC authentication's cipher); `commands` holds the QMP
handlers; `vnc_edge` is the trio edge with the real sockets, loaded when a display
first listens.
"""

# ui/vnc.h VNC_AUTH_*: the security types the displays here can have.
AUTH_INVALID = 0
AUTH_NONE = 1
AUTH_VNC = 2
