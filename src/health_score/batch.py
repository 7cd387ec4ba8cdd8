"""Score a whole portfolio: array scoring checked against the exact rule, then the run's rows.

:class:`~health_score.scoring.vector.VectorModel` scores every account at once in float64 and
marks the accounts whose published numbers the floats cannot guarantee (a value within a hair of
a rounding half, a cap or the coverage floor; a value with more than 15 significant digits).
Those, and only those, are scored again with the exact ``Decimal`` rule
(:meth:`Model.score_compact`), whose results replace the float ones; so every published number is
the exact rule's. One account that cannot be scored is listed and never stops the others. With
``exact``, every account takes the ``Decimal`` path (the reference the fast path is tested
against; ``HSM_EXACT_SCORING=1`` in a run).
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from health_score.columns import AccountTable
from health_score.loaders.changes_output import ScoredArrays
from health_score.loaders.explanation import (
    score_rows,
    scores_csv_from_columns,
    write_explanation,
)
from health_score.records import AccountInput
from health_score.scoring.composite import AccountScore, Model
from health_score.scoring.vector import (
    Result,
    VectorModel,
    empty_result,
    exact_row,
    put,
    resolve,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ScoredBatch:
    """What scoring a portfolio produced."""

    #: scores.csv, column by column (``score_columns``), accounts in order: see :attr:`rows`.
    columns: list[list[str]] = field(default_factory=list)
    tiers: Counter[str] = field(default_factory=Counter)
    scored: int = 0  # accounts with a final score
    failures: list[dict[str, str]] = field(default_factory=list)
    #: The full scores (with per-metric results), kept only when asked (for write-back).
    scores: list[AccountScore] = field(default_factory=list)
    exact_accounts: int = 0  # accounts scored with the Decimal rule
    #: What the explanation file is written from (:meth:`write_explanation`).
    detail: tuple[VectorModel, AccountTable, Result, NDArray[np.bool_]] | None = None
    #: What ``changes.csv`` is computed from, kept when the explanation is written.
    arrays: ScoredArrays | None = None

    @property
    def rows(self) -> list[tuple[str, ...]]:
        """scores.csv rows, in account order."""
        return list(zip(*self.columns, strict=True))

    def scores_csv(self, header: Sequence[str]) -> bytes:
        """scores.csv with ``header``, rows made one at a time."""
        return scores_csv_from_columns(header, self.columns)

    def write_explanation(self, handle: BinaryIO) -> None:
        """Write ``metrics.npz`` (once; the arrays are let go afterwards)."""
        assert self.detail is not None, "the explanation was written already"
        write_explanation(handle, *self.detail)
        vmodel, table, result, ok = self.detail
        keep = np.flatnonzero(ok)
        everything = len(keep) == table.size

        def pick(values: NDArray[Any]) -> NDArray[Any]:
            return values if everything else values[keep]

        self.arrays = ScoredArrays(
            vmodel=vmodel,
            ids=table.ids if everything else [table.ids[i] for i in keep.tolist()],
            names=table.names if everything else [table.names[i] for i in keep.tolist()],
            raw_text=table.raw_text if everything else table.raw_text[:, keep],
            score=pick(result.score),
            effective=pick(result.effective),
            final=pick(result.final),
            rule=pick(result.rule),
            tier=pick(result.tier),
        )
        self.detail = None

    def explanation(self) -> bytes:
        buffer = io.BytesIO()
        self.write_explanation(buffer)
        return buffer.getvalue()


def as_table(accounts: AccountTable | Sequence[AccountInput], model: Model) -> AccountTable:
    if isinstance(accounts, AccountTable):
        return accounts
    return AccountTable.from_accounts(accounts, model.config)


def score_batch(
    accounts: AccountTable | Sequence[AccountInput],
    model: Model,
    *,
    keep: bool = False,
    exact: bool = False,
) -> ScoredBatch:
    """Score ``accounts`` with ``model``: the scores' rows, the explanation file and counts.

    With ``keep``, the batch also holds every account's full score (for write-back).
    """
    table = as_table(accounts, model)
    vmodel = VectorModel(model, table.table.metrics, table.table.segments)
    n = table.size
    result = None
    if not exact and vmodel.supported and n:
        try:
            result = vmodel.score(table.table)
            resolve(vmodel, result, table.table.segment, table.values)
            result.score_near = result.points_near = result.dimension_near = None
        except Exception as exc:  # e.g. an unusual config; the exact rule still scores it
            log.warning("array scoring failed (%s: %s); scoring exactly", type(exc).__name__, exc)
    if result is None:
        result = empty_result(n, len(model.dimensions), vmodel.slots)
    ok = np.ones(n, dtype=bool)
    batch = ScoredBatch()
    redo = np.flatnonzero(result.exact).tolist()
    batch.exact_accounts = len(redo)
    for index in redo:
        account = table.account(index)
        try:
            compact = model.score_compact(account)
            put(result, index, exact_row(vmodel, account, compact))
        except Exception as exc:  # listed in the manifest; the other accounts are still scored
            log.error("account %s could not be scored: %s", account.account_id, exc)
            batch.failures.append(
                {"account_id": account.account_id, "error": f"{type(exc).__name__}: {exc}"}
            )
            ok[index] = False
    batch.columns = score_rows(vmodel, table, result, ok)
    labels = model.config.tier_labels
    counts = np.bincount(result.tier[ok], minlength=len(labels))
    batch.tiers = Counter({labels[i]: int(c) for i, c in enumerate(counts.tolist()) if c})
    batch.scored = int((result.final[ok] >= 0).sum())
    batch.detail = (vmodel, table, result, ok)
    if keep:
        for index in np.flatnonzero(ok).tolist():
            account = table.account(index)
            compact = model.score_compact(account)
            batch.scores.append(replace(compact.score, metrics=model.explain(account, compact)))
    return batch
