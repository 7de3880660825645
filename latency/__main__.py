"""``python -m latency``: see ``latency.cli``."""

import sys

from latency.cli import main

sys.exit(main())
