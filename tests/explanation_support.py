"""Reading a run's explanation (``metrics.npz``) in tests, as the rows of the CSV it replaces."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from health_score.loaders.explanation import EXPLANATION, metric_csv_lines


def metric_csv(folder: Path) -> str:
    """The run folder's explanation as ``metrics.csv`` text."""
    return "".join(metric_csv_lines((folder / EXPLANATION).read_bytes()))


def metric_rows(folder: Path) -> list[dict[str, str]]:
    """The run folder's explanation rows (``METRIC_COLUMNS`` → cell text)."""
    return list(csv.DictReader(io.StringIO(metric_csv(folder))))
