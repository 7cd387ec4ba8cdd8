"""Raw-metrics files for tests: the example file with some cells changed."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "raw_metrics.csv"


def edited_raw(target: Path, changes: dict[str, dict[str, str]]) -> Path:
    """The example file written to ``target``, with ``changes`` (account id → column → cell)."""
    rows = list(csv.DictReader(io.StringIO(EXAMPLE.read_text(encoding="utf-8"))))
    for row in rows:
        row.update(changes.get(row["account_id"], {}))
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return target
