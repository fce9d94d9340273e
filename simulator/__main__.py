"""`python -m simulator`: the simulator without Django (fleets from flags only)."""

import sys

from simulator.cli import main

sys.exit(main())
