"""Legacy entry point from the seed document: ``python3 -m src.main --dry-run``.

A thin shim over :mod:`health_score.pipeline`; ``lambda_handler`` stays importable for old
templates.
"""

from __future__ import annotations

import sys

from health_score.pipeline import lambda_handler, main

__all__ = ["lambda_handler", "main"]

if __name__ == "__main__":
    sys.exit(main())
