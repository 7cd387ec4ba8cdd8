"""Tests for Health Score Middleware."""

from __future__ import annotations
