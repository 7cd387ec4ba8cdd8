"""``changes.csv``: each account's change since the previous ``ok`` run, split into its parts.

The previous run is found in the same runs folder (local or S3): the latest ``ok`` run of the
latest earlier period; if no earlier period has one, the latest ``ok`` run of the same period
that started before this one. Its side is read from its ``metrics.npz``, ``scores.csv`` and
``config/``; this run's from the batch in memory. The arithmetic is
:mod:`health_score.scoring.changes`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from health_score.config import (
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    ConfigError,
    ConfigFiles,
    scoring_from,
)
from health_score.csvsafe import safe_cell, safe_column, unescape_cell
from health_score.loaders.artifacts import MANIFEST, LocalRunStore, RunStore, RunWriter, StoreError
from health_score.loaders.csv_output import csv_cell
from health_score.loaders.explanation import EXPLANATION, load_explanation
from health_score.loaders.s3_store import S3RunStore
from health_score.scoring.changes import (
    APPEARED,
    COMPARED,
    LOST_SCORE,
    PART_UNIT,
    SCORE_UNIT,
    UNSCORED,
    Attribution,
    Side,
    attribute,
    pattern_weights,
    weights_signature,
)
from health_score.scoring.composite import Model
from health_score.scoring.vector import VectorModel

log = logging.getLogger(__name__)

CHANGES = "changes.csv"
CHANGE_COLUMNS = (
    "account_id",
    "account_name",
    "previous_final",
    "final",
    "change",
    "previous_tier",
    "tier",
    "part",
    "dimension",
    "raw_before",
    "raw_after",
    "points_change",
)


@dataclass(frozen=True, slots=True)
class ScoredArrays:
    """A scored run's accounts (those scored without failure), as the explanation holds them."""

    vmodel: VectorModel
    ids: list[str]
    names: list[str]
    raw_text: NDArray[np.bytes_]  # metrics × accounts
    score: NDArray[np.signedinteger[Any]]  # accounts × slots, ×10⁴, -1 = none
    effective: NDArray[np.signedinteger[Any]]  # ×10⁸
    final: NDArray[np.int64]  # published ×10, -1 = none
    rule: NDArray[np.int64]  # matched cap rule, -1 = none
    tier: NDArray[np.int64]  # index into config.tier_labels


EXPLANATION_FIELDS = (
    "account_id",
    "dimension",
    "metric",
    "slot_metric",
    "raw_value",
    "normalised_score",
    "effective_weight",
)
SCORE_FIELDS = ("account_id", "account_name", "final_score", "health_tier")
#: The matching rule's cap in scores.csv; runs written before ``cap_value`` existed held it in
#: ``qualitative_override`` (now true/false: the cap lowered the score, as in the original).
CAP_FIELD, OLD_CAP_FIELD = "cap_value", "qualitative_override"


class ChangesError(Exception):
    """The previous run's files cannot be compared with; the message names the run and file."""


# --------------------------------------------------------------------------------------------
# Reading the runs folder


class _Runs:
    """Reading the run folders of a store (local folder or S3 prefix)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def run_ids(self) -> list[str]:
        store = self.store
        if not isinstance(store, LocalRunStore | S3RunStore):
            return []  # a store that cannot be listed (a test double): nothing to compare with
        try:
            return store.run_ids()
        except StoreError as exc:
            raise ChangesError(f"cannot list the runs in {store.location}: {exc}") from None

    def read(self, run_id: str, name: str) -> bytes | None:
        store = self.store
        if not isinstance(store, LocalRunStore | S3RunStore):
            return None
        try:
            return store.read(run_id, name)
        except StoreError as exc:
            raise ChangesError(f"run {run_id}: {exc}") from None


@dataclass(frozen=True, slots=True)
class PreviousRun:
    run_id: str
    period: str

    def as_dict(self) -> dict[str, str]:
        return {"run_id": self.run_id, "period": self.period}


def previous_ok_run(
    runs: Sequence[tuple[str, dict[str, Any]]], period: str, started_at: str, run_id: str
) -> PreviousRun | None:
    """The run to compare with, from ``(run_id, manifest)`` pairs: the latest ``ok`` run of the
    latest earlier period, else the latest ``ok`` run of ``period`` started before this one."""
    candidates = [
        (str(m.get("period", "")), str(m.get("started_at", "")), rid)
        for rid, m in runs
        if rid != run_id and m.get("status") == "ok"
    ]
    earlier = [c for c in candidates if c[0] < period]
    same = [c for c in candidates if c[0] == period and c[1] < started_at]
    chosen = max(earlier) if earlier else (max(same) if same else None)
    return None if chosen is None else PreviousRun(chosen[2], chosen[0])


def find_previous(store: RunStore, period: str, started_at: str, run_id: str) -> PreviousRun | None:
    reader = _Runs(store)
    runs: list[tuple[str, dict[str, Any]]] = []
    for rid in reader.run_ids():
        if rid == run_id:
            continue
        data = reader.read(rid, MANIFEST)
        if data is None:
            continue  # a partial run (still running or stopped half-way)
        try:
            manifest = json.loads(data)
        except ValueError:
            log.warning("run %s: %s is not JSON; not compared with", rid, MANIFEST)
            continue
        if isinstance(manifest, dict):
            runs.append((rid, manifest))
    return previous_ok_run(runs, period, started_at, run_id)


# --------------------------------------------------------------------------------------------
# The two sides


@dataclass(frozen=True, slots=True)
class _Previous:
    ids: list[str]
    names: list[str]
    tiers: list[str]
    final: NDArray[np.int64]  # ×10
    cap: NDArray[np.int64]  # ×10⁴
    slots: list[tuple[str, str]]
    score: NDArray[np.signedinteger[Any]]
    effective: NDArray[np.signedinteger[Any]]
    raw_value: NDArray[np.bytes_]  # metrics × accounts
    slot_metric: list[int]  # slot → row of raw_value
    model: Model | None


def _unescaped(cells: list[str]) -> list[str]:
    """:func:`unescape_cell` of each cell (none to undo, the usual case: one scan)."""
    if "\x00'" not in "\x00" + "\x00".join(cells):
        return cells
    return [unescape_cell(cell) for cell in cells]


_TENTHS_OF = {f"{v // 10}.{v % 10}": v for v in range(1001)} | {"": -1}


def _tenths(text: str) -> int:
    """A published one-decimal score ×10 (−1 = none)."""
    known = _TENTHS_OF.get(text)
    if known is not None:
        return known
    whole, dot, tenth = text.partition(".")
    if dot and len(tenth) == 1 and whole.isdigit() and tenth.isdigit():
        return int(whole) * 10 + int(tenth)
    return int(Decimal(text) * 10)  # raises for a text that is no number


def _read_previous(store: RunStore, run: PreviousRun) -> _Previous:
    reader = _Runs(store)

    def need(name: str) -> bytes:
        data = reader.read(run.run_id, name)
        if data is None:
            raise ChangesError(f"run {run.run_id}: {name} is missing")
        return data

    try:
        arrays = load_explanation(need(EXPLANATION))
    except ValueError as exc:
        raise ChangesError(f"run {run.run_id}: {EXPLANATION}: {exc}") from None
    lacking = [name for name in EXPLANATION_FIELDS if name not in arrays]
    n_slots = len(arrays.get("metric", ()))
    if lacking or arrays["normalised_score"].shape != (len(arrays["account_id"]), n_slots):
        raise ChangesError(
            f"run {run.run_id}: {EXPLANATION}: expected the arrays "
            f"{', '.join(EXPLANATION_FIELDS)} with one row per account and one column per slot"
        )
    try:
        text = need("scores.csv").decode("utf-8")
    except UnicodeDecodeError:
        raise ChangesError(f"run {run.run_id}: scores.csv is not UTF-8 text") from None
    reader_rows = csv.reader(io.StringIO(text))
    header = next(reader_rows, [])
    cap_field = CAP_FIELD if CAP_FIELD in header else OLD_CAP_FIELD
    try:
        at = {name: header.index(name) for name in (*SCORE_FIELDS, cap_field)}
    except ValueError:
        raise ChangesError(
            f"run {run.run_id}: scores.csv: expected the columns {', '.join(SCORE_FIELDS)} "
            f"and {CAP_FIELD} (or, in runs written before it, {OLD_CAP_FIELD})"
        ) from None
    rows = [r for r in reader_rows if len(r) == len(header)]
    ids = [str(i) for i in arrays["account_id"].tolist()]
    # Both files list the run's scored accounts in the same order (scores.csv's ids guarded):
    # checked in one comparison; otherwise matched by id.
    if list(safe_column(ids)) != [r[at["account_id"]] for r in rows]:
        by_id = {unescape_cell(r[at["account_id"]]): r for r in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise ChangesError(f"run {run.run_id}: scores.csv lacks account {missing[0]!r}")
        rows = [by_id[i] for i in ids]
    try:
        final = np.array([_tenths(r[at["final_score"]]) for r in rows], dtype=np.int64)
        cap = np.array(
            [
                -1
                if not (c := r[at[cap_field]])
                else int((Decimal(c) * SCORE_UNIT).to_integral_value())
                for r in rows
            ],
            dtype=np.int64,
        )
    except (ValueError, ArithmeticError) as exc:
        raise ChangesError(
            f"run {run.run_id}: scores.csv: expected final_score and {cap_field} "
            f"numbers ({type(exc).__name__}: {exc})"
        ) from None
    files = {
        name: data
        for name in (WEIGHTS_FILE, THRESHOLDS_FILE)
        if (data := reader.read(run.run_id, f"config/{name}")) is not None
    }
    model: Model | None = None
    if len(files) == 2:
        try:
            model = Model(scoring_from(ConfigFiles(Path("config"), tuple(files), files)))
        except ConfigError:
            log.warning("run %s: its config cannot be read; weights are taken as unchanged", run)
    return _Previous(
        ids=ids,
        names=_unescaped([r[at["account_name"]] for r in rows]),
        tiers=_unescaped([r[at["health_tier"]] for r in rows]),
        final=final,
        cap=cap,
        slots=list(zip(arrays["dimension"].tolist(), arrays["metric"].tolist(), strict=True)),
        score=arrays["normalised_score"],
        effective=arrays["effective_weight"],
        raw_value=arrays["raw_value"],
        slot_metric=[int(x) for x in arrays["slot_metric"].tolist()],
        model=model,
    )


def _fixed(value: int, places: int) -> str:
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


def write_changes(
    writer: RunWriter,
    store: RunStore,
    current: ScoredArrays,
    *,
    period: str,
    run_id: str,
    started_at: str,
) -> PreviousRun | None:
    """Write ``changes.csv`` against the previous ok run; returns that run (None: none found,
    and every scored account is ``appeared``).

    A previous run that cannot be read (a damaged file, S3 refusing the listing) never fails
    this run: the problem is logged, no ``changes.csv`` is written and None is returned.
    """
    try:
        previous = find_previous(store, period, started_at, run_id)
        before = _read_previous(store, previous) if previous is not None else None
    except ChangesError as exc:
        log.error("changes.csv not written: %s", exc)
        return None
    writer.write_bytes(CHANGES, changes_csv(current, before))
    return previous


def changes_csv(current: ScoredArrays, before: _Previous | None) -> bytes:
    model = current.vmodel.model
    if before is None:  # nothing to compare with: each scored account appeared
        n = len(current.ids)
        final = current.final.astype(np.int64)
        zeros = np.zeros(n, dtype=np.int64)
        appeared = Attribution(
            kind=np.where(final >= 0, APPEARED, UNSCORED).astype(np.int64),
            change=np.maximum(final, 0) * (PART_UNIT // 10),
            metric=np.zeros((n, 0), dtype=np.int64),
            weights=zeros,
            coverage=zeros,
            cap=zeros,
            rounding=zeros,
        )
        return _rows(current, None, [], np.full(n, -1, dtype=np.intp), n, appeared)
    slots = [(d.name, m.name) for d in model.dimensions for m in d.metrics]
    old_slots = before.slots if before is not None else []
    known = set(slots)
    union = slots + [s for s in old_slots if s not in known]
    position = {s: i for i, s in enumerate(union)}
    k = len(union)
    n_cur = len(current.ids)
    old_ids = before.ids if before is not None else []
    old_index = {a: i for i, a in enumerate(old_ids)}
    current_ids = set(current.ids)
    gone = [i for i, a in enumerate(old_ids) if a not in current_ids]
    n = n_cur + len(gone)

    # int32 where every stored value fits (as the explanation stores them): half the memory.
    kinds = [current.score.dtype, current.effective.dtype]
    if before is not None:
        kinds += [before.score.dtype, before.effective.dtype]
    cell = np.int32 if all(kind == np.int32 for kind in kinds) else np.int64
    score1 = np.full((n, k), -1, dtype=cell)
    eff1 = np.zeros((n, k), dtype=cell)
    score1[:n_cur, : len(slots)] = current.score
    eff1[:n_cur, : len(slots)] = current.effective
    rules = model.config.cap_rules
    cap_values = np.array([int(r.value * SCORE_UNIT) for r in rules] + [-1], dtype=np.int64)
    cap1 = np.full(n, -1, dtype=np.int64)
    cap1[:n_cur] = cap_values[current.rule]
    final1 = np.full(n, -1, dtype=np.int64)
    final1[:n_cur] = current.final

    score0 = np.full((n, k), -1, dtype=cell)
    eff0 = np.zeros((n, k), dtype=cell)
    cap0 = np.full(n, -1, dtype=np.int64)
    final0 = np.full(n, -1, dtype=np.int64)
    # row in `before` of each aligned account (-1: not in the previous run)
    source = (
        np.array([old_index.get(a, -1) for a in current.ids] + gone, dtype=np.intp)
        if n
        else np.zeros(0, dtype=np.intp)
    )
    cross = None
    if before is not None:
        there = np.flatnonzero(source >= 0)
        rows = source[there]
        columns = np.array([position[s] for s in old_slots], dtype=np.intp)
        score0[np.ix_(there, columns)] = before.score[rows]
        eff0[np.ix_(there, columns)] = before.effective[rows]
        cap0[there] = before.cap[rows]
        final0[there] = before.final[rows]
        if before.model is not None and weights_signature(before.model) != weights_signature(model):
            new_slots: list[int | None] = [position[s] for s in slots]
            old_model_slots: list[int | None] = [
                position.get((d.name, m.name)) for d in before.model.dimensions for m in d.metrics
            ]
            cross = (
                pattern_weights(model, new_slots, score0 >= 0),
                pattern_weights(before.model, old_model_slots, score1 >= 0),
            )
    result = _attribute_in_chunks(
        Side(score0, eff0, cap0, final0), Side(score1, eff1, cap1, final1), cross
    )
    return _rows(current, before, union, source, n_cur, result)


CHUNK = 8192  # accounts per call: bounds the temporary arrays of the arithmetic


def _attribute_in_chunks(
    before: Side, after: Side, cross: tuple[NDArray[np.int64], NDArray[np.int64]] | None
) -> Attribution:
    """:func:`attribute`, a slice of accounts at a time (each account is independent)."""
    pieces: list[Attribution] = []
    n = len(before.final)
    for start in range(0, max(n, 1), CHUNK):
        part = slice(start, start + CHUNK)

        def cut(side: Side, part: slice = part) -> Side:
            return Side(side.score[part], side.effective[part], side.cap[part], side.final[part])

        pieces.append(
            attribute(
                cut(before),
                cut(after),
                None if cross is None else (cross[0][part], cross[1][part]),
            )
        )
    if len(pieces) == 1:
        return pieces[0]
    return Attribution(
        *(
            np.concatenate([getattr(p, name) for p in pieces])
            for name in ("kind", "change", "metric", "weights", "coverage", "cap", "rounding")
        )
    )


def _cell(text: str) -> str:
    """A text cell for people: guarded against formula injection, quoted when it must be."""
    return csv_cell(safe_cell(text))


def _cells(texts: Sequence[str]) -> list[str]:
    """:func:`_cell` of each text; one scan when none needs guarding or quoting (the usual)."""
    guarded = safe_column(texts)
    if any(ch in "\x00".join(guarded) for ch in ',"\r\n'):
        return [csv_cell(text) for text in guarded]
    return list(guarded)


_TENTHS = [f"{v // 10}.{v % 10}" for v in range(1001)]


def _tenths_text(value: int) -> str:
    """A published score ×10 as its one-decimal text ('' for −1 = none)."""
    if 0 <= value < len(_TENTHS):
        return _TENTHS[value]
    return "" if value == -1 else _fixed(value, 1)


def _texts(values: NDArray[np.bytes_]) -> list[str]:
    """Raw value texts (numbers as written: ASCII, decoded in one go where they are)."""
    try:
        decoded: list[str] = values.astype(np.str_).tolist()
    except UnicodeDecodeError:
        decoded = [v.decode("utf-8") for v in values.tolist()]
    return decoded


def _points(values: NDArray[np.int64]) -> list[str]:
    """10⁻⁴ points as text with 4 decimals (exact: |v| is far below 2⁵³)."""
    return [f"{v:.4f}" for v in (values / PART_UNIT).tolist()]


def _rows(
    current: ScoredArrays,
    before: _Previous | None,
    union: list[tuple[str, str]],
    source: NDArray[np.intp],
    n_cur: int,
    result: Attribution,
) -> bytes:
    """The CSV: each account's rows (its non-zero parts, metric by metric first), in account
    order. Built line by line as text: at 100,000 accounts it has millions of rows."""
    labels = [_cell(label) for label in current.vmodel.model.config.tier_labels]
    kinds = result.kind.tolist()
    src = source.tolist()
    final_cur = current.final.tolist()
    tiers_cur = current.tier.tolist()
    final_old = before.final.tolist() if before is not None else []
    change_tenths = (result.change // (PART_UNIT // 10)).tolist()
    ids = _cells([*current.ids, *(before.ids if before is not None else [])])
    names = _cells([*current.names, *(before.names if before is not None else [])])
    old_offset = n_cur
    tier_cells: dict[str, str] = {}
    prefixes: list[str] = []
    for i, kind in enumerate(kinds):
        j = src[i]
        if i < n_cur:
            account_id, name = ids[i], names[i]
            final_text = _tenths_text(final_cur[i])
            tier = labels[tiers_cur[i]]
        else:
            account_id, name = ids[old_offset + j], names[old_offset + j]
            final_text, tier = "", ""
        if j >= 0 and before is not None:
            prev_text = _tenths_text(final_old[j])
            old_tier = before.tiers[j]
            prev_tier = tier_cells.get(old_tier) or tier_cells.setdefault(old_tier, _cell(old_tier))
        else:
            prev_text, prev_tier = "", ""
        # The change is a difference of published (one-decimal) scores.
        scored = kind in (COMPARED, APPEARED, LOST_SCORE)
        change_text = _fixed(change_tenths[i], 1) if scored else ""
        prefixes.append(
            f"{account_id},{name},{prev_text},{final_text},{change_text},{prev_tier},{tier}"
        )

    # Metric rows: only where both runs scored the metric (else its part is 0), so both runs
    # hold its raw value.
    accounts, slots = np.nonzero(result.metric)
    slot_texts = [f"{_cell(metric)},{_cell(dim)}" for dim, metric in union]
    metric_lines: list[str] = []
    if accounts.size:
        assert before is not None
        old_position = {s: i for i, s in enumerate(before.slots)}
        old_slot = np.array([old_position.get(s, -1) for s in union], dtype=np.intp)
        old_metric = np.array(before.slot_metric, dtype=np.intp)
        column_of = np.array(current.vmodel.slot_column, dtype=np.intp)
        raw_before = _texts(before.raw_value[old_metric[old_slot[slots]], source[accounts]])
        raw_after = _texts(current.raw_text[column_of[slots], accounts])
        metric_lines = [
            f"{prefixes[a]},{slot_texts[k]},{b},{r},{p}\n"
            for a, k, b, r, p in zip(
                accounts.tolist(),
                slots.tolist(),
                raw_before,
                raw_after,
                _points(result.metric[accounts, slots]),
                strict=True,
            )
        ]
    starts = np.searchsorted(accounts, np.arange(len(kinds) + 1)).tolist()

    totals = {
        "weights": _points(result.weights),
        "coverage": _points(result.coverage),
        "cap": _points(result.cap),
        "rounding": _points(result.rounding),
    }
    nonzero = {
        name: (values != 0).tolist()
        for name, values in (
            ("weights", result.weights),
            ("coverage", result.coverage),
            ("cap", result.cap),
            ("rounding", result.rounding),
        )
    }
    change_points = _points(result.change)
    out: list[str] = [",".join(CHANGE_COLUMNS) + "\n"]
    for i, kind in enumerate(kinds):
        prefix = prefixes[i]
        if kind == APPEARED:
            out.append(f"{prefix},appeared,,,,{change_points[i]}\n")
        elif kind == LOST_SCORE:
            out.append(f"{prefix},lost_score,,,,{change_points[i]}\n")
        elif kind == COMPARED:
            first, last = starts[i], starts[i + 1]
            out.extend(metric_lines[first:last])
            rest = [
                f"{prefix},{part},,,,{totals[part][i]}\n"
                for part in ("weights", "coverage", "cap", "rounding")
                if nonzero[part][i]
            ]
            out.extend(rest)
            if first == last and not rest:
                out.append(f"{prefix},unchanged,,,,0.0000\n")
        else:
            out.append(f"{prefix},unscored,,,,\n")
    return "".join(out).encode("utf-8")
