"""migration: QEMU 2.11's live migration, save and restore (both sides).

Depends on `schema` at most; `vmm` composes it into the Machine (`vmm.vm`:
`Vm.migration`, the edge attached by `vmm.server`). Pure modules: `states` (the two
state tables), `params` (capabilities, parameters, their checks), `ram` (the RAM
model in the Machine's time), `stream` (the emulator's versioned stream format and the
`Section` Protocol subsystems add their state through), `uri` (URIs and their
synchronous errors), `host` (the Protocols towards the Machine and the edge, with
recording fakes), `commands` (the `Migration` subsystem and its QMP commands). The
one I/O edge is `transport` (trio: tcp, unix, fd, exec).
"""
