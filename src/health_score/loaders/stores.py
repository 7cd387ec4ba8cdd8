"""Where a run's folder goes: a local folder or ``s3://bucket/prefix``."""

from __future__ import annotations

from pathlib import Path

from health_score.loaders.artifacts import LocalRunStore, RunStore
from health_score.loaders.s3_store import S3RunStore


def open_store(runs_dir: str) -> RunStore:
    """A local folder, or ``s3://bucket/prefix`` (boto3 is imported only for S3)."""
    if runs_dir.startswith("s3://"):
        return S3RunStore.from_url(runs_dir)
    store = LocalRunStore(Path(runs_dir))
    store.check()
    return store
