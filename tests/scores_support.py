"""scores.csv as runs wrote it before ``cap_value``: for tests that old run folders still read."""

from __future__ import annotations

import csv
import io
from pathlib import Path


def rewrite_as_old_scores(path: Path) -> Path:
    """Rewrite a scores.csv in place in the layout written before ``cap_value``:
    ``qualitative_override`` held the matching rule's cap and ``modifier_applied`` true/false
    (the cap lowered the score); there was no rule in words and no ``cap_value`` column."""
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    rows = list(reader)
    header = list(reader.fieldnames or ())
    assert "cap_value" in header, "already in the old layout"
    old_header = [c for c in header if c != "cap_value"]
    for row in rows:
        row["modifier_applied"] = row["qualitative_override"]
        row["qualitative_override"] = row.pop("cap_value")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
