"""vmm.machine: one simulated VM and the parts of it every subsystem shares.

`core` (the Machine: main-loop requests, timers, the subsystems it owns), `runstate`
(the transition table), `events` (the event bus and its throttle), `guest` (the
simulated guest's behaviours), `fds` (descriptors passed in over SCM_RIGHTS),
`trace` (trace events), `commands` (the QMP commands the Machine answers itself).
"""
