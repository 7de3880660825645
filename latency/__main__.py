"""``python -m hwnas.latency``: see ``hwnas.latency.cli``."""

import sys

from hwnas.latency.cli import main

sys.exit(main())
