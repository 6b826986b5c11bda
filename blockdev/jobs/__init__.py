"""Block jobs of QEMU 2.11: the common model (`blockdev.jobs.core`), its commands
(`blockdev.jobs.commands`) and one module per kind (stream, commit, mirror, backup)."""
