"""A local ``.env`` for the command line and the dashboard (never read on AWS Lambda)."""

from __future__ import annotations

from pathlib import Path

from dotenv import load_dotenv

ENV_FILE = Path(".env")


def load_local_env(path: Path = ENV_FILE) -> bool:
    """Load ``path`` (default ``./.env``) into ``os.environ``; variables already set win."""
    return path.is_file() and load_dotenv(path, override=False)
