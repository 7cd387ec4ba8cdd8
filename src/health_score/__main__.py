"""``python -m health_score``: the same as the ``health-score`` command."""

from __future__ import annotations

import sys

from health_score.cli import main

if __name__ == "__main__":
    sys.exit(main())
