"""Legacy entry point from the seed document: ``python3 -m src.main --dry-run``.

A thin shim over ``health-score run`` (``--check-config`` is ``health-score check-config``);
``lambda_handler`` stays importable for templates that still name ``src.main.lambda_handler``.
"""

from __future__ import annotations

import sys

from health_score.aws_lambda import lambda_handler
from health_score.cli import legacy_main as main

__all__ = ["lambda_handler", "main"]

if __name__ == "__main__":
    sys.exit(main())
