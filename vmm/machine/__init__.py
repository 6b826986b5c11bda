"""vmm.machine: one simulated VM and the parts of it every subsystem shares.

`core` (the Machine: main-loop requests, the board, the subsystems plugged into it),
`subsystem` (the hooks every subsystem offers), `clock` (host and virtual clocks, timer
queues), `runstate` (the transition table), `events` (the event bus and its throttle),
`guest` (the guest's behaviours and profiles, the OS and the firmware), `fds`
(descriptors passed in over SCM_RIGHTS), `trace` (trace events), `commands` (the QMP
commands the Machine answers itself).
"""
