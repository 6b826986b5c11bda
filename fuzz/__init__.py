"""fuzz: the fuzzing harness that ships with the emulator (`qmp-emulator-fuzz`).

Depends on `schema` (the strategies and the output checker) and runs the installed
program as its target: `fuzz.inputs` generates, `fuzz.harness` sends and counts.
"""
