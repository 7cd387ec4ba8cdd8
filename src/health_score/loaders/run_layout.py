"""What every run store agrees on: the manifest's name and the error for an existing run.

Its own module so that :mod:`health_score.loaders.artifacts` (which opens a local or an S3 store)
and :mod:`health_score.loaders.s3_store` both import it without importing each other.
"""

from __future__ import annotations

#: Written last: a run folder with a manifest is complete.
MANIFEST = "manifest.json"


class ArtifactExistsError(Exception):
    """A run folder or file already exists: runs are immutable."""
