"""`python -m fuzz`: the same as the `qmp-emulator-fuzz` console script."""

import sys

from fuzz.harness import main

sys.exit(main())
