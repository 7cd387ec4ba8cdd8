"""Health Score Middleware: extract → score → load."""

from __future__ import annotations
