"""devices.display: the machine's displays, as far as QMP sees them (today: VNC).

Pure models; the VNC/RFB listener is a later edge module of this package.
"""
