"""Score many accounts: the scores' CSV rows in memory, their metric detail streamed to a file.

Large runs are spread over worker processes (forked, so the accounts are shared, not copied);
each worker streams its accounts' detail rows to a part file and the parts are joined in order.
Smaller runs, and processes that cannot fork safely (other threads running, or no
``multiprocessing`` support as on AWS Lambda), score in-process. Both paths produce the same
bytes.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from health_score.loaders.csv_output import DetailLines, score_row
from health_score.records import AccountInput
from health_score.scoring.composite import AccountScore, Model
from health_score.scoring.spec import ScoringConfig

log = logging.getLogger(__name__)

#: Below this many accounts, starting processes costs more than it saves.
PARALLEL_MIN_ACCOUNTS = int(os.environ.get("HSM_PARALLEL_MIN_ACCOUNTS", "20000"))
MAX_PROCESSES = 4


@dataclass(slots=True)
class ScoredBatch:
    """What scoring a list of accounts produced (besides the detail rows it streamed)."""

    rows: list[list[str]] = field(default_factory=list)  # scores.csv rows, in account order
    tiers: Counter[str] = field(default_factory=Counter)
    scored: int = 0  # accounts with a final score
    failures: list[dict[str, str]] = field(default_factory=list)
    #: The full scores (with per-metric results), kept only when asked (for write-back).
    scores: list[AccountScore] = field(default_factory=list)

    def extend(self, other: ScoredBatch) -> None:
        self.rows.extend(other.rows)
        self.scores.extend(other.scores)
        self.tiers.update(other.tiers)
        self.scored += other.scored
        self.failures.extend(other.failures)


def _score_into(
    accounts: Sequence[AccountInput], model: Model, detail: TextIO, keep: bool
) -> ScoredBatch:
    """Score in this process; one account's failure is listed and never stops the others."""
    batch = ScoredBatch()
    lines = DetailLines(model)
    config: ScoringConfig = model.config
    for account in accounts:
        try:
            compact = model.score_compact(account)
            detail_text = lines.lines(account, compact)
        except Exception as exc:  # listed in the manifest; the other accounts are still scored
            log.error("account %s could not be scored: %s", account.account_id, exc)
            batch.failures.append(
                {"account_id": account.account_id, "error": f"{type(exc).__name__}: {exc}"}
            )
            continue
        score = compact.score
        detail.write(detail_text)
        batch.rows.append(score_row(score, config))
        batch.tiers[score.tier] += 1
        batch.scored += score.final is not None
        if keep:
            batch.scores.append(replace(score, metrics=model.explain(account, compact)))
    return batch


# Set by the parent just before forking; the children read it (copy-on-write), never pickle it.
_SHARED: tuple[Sequence[AccountInput], Model, Path, bool] | None = None


def _worker(part: tuple[int, int, int]) -> ScoredBatch:
    index, start, stop = part
    assert _SHARED is not None
    accounts, model, folder, keep = _SHARED
    with (folder / f"part-{index:03d}.csv").open("w", encoding="utf-8", newline="") as detail:
        return _score_into(accounts[start:stop], model, detail, keep)


def processes_for(count: int) -> int:
    """How many processes to score ``count`` accounts with (1 = in-process)."""
    wanted = int(os.environ.get("HSM_SCORING_PROCESSES", "0")) or min(
        os.cpu_count() or 1, MAX_PROCESSES
    )
    if count < PARALLEL_MIN_ACCOUNTS or wanted < 2:
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    if threading.active_count() > 1:  # forking a threaded process can deadlock the child
        return 1
    return min(wanted, count)


def score_batch(
    accounts: Sequence[AccountInput],
    model: Model,
    detail: TextIO,
    *,
    processes: int = 1,
    keep: bool = False,
) -> ScoredBatch:
    """Score ``accounts`` with ``model``, writing detail rows to ``detail`` in account order.

    With ``keep``, the batch also holds every account's full score (for write-back).
    """
    global _SHARED
    if processes < 2:
        return _score_into(accounts, model, detail, keep)
    size = -(-len(accounts) // processes)
    parts = [(i, i * size, min((i + 1) * size, len(accounts))) for i in range(processes)]
    with tempfile.TemporaryDirectory(prefix="hsm-score-") as tmp:
        folder = Path(tmp)
        _SHARED = (accounts, model, folder, keep)
        # Keep the collector from touching (and so copying) every shared object in the children.
        gc.freeze()
        try:
            context = multiprocessing.get_context("fork")
            with context.Pool(processes) as pool:
                results = pool.map(_worker, parts)
        except OSError as exc:  # e.g. no /dev/shm for the pool's semaphores
            log.info("scoring in-process (%s)", exc)
            return _score_into(accounts, model, detail, keep)
        finally:
            _SHARED = None
            gc.unfreeze()
        batch = ScoredBatch()
        for (index, _, _), result in zip(parts, results, strict=True):
            with (folder / f"part-{index:03d}.csv").open(encoding="utf-8", newline="") as part:
                shutil.copyfileobj(part, detail, 1 << 20)
            batch.extend(result)
        return batch
