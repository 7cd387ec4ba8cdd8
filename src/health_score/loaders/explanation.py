"""The run's files from array scores: ``scores.csv`` rows and the explanation ``metrics.npz``.

``metrics.npz`` is the metric-level explanation (one entry per account × dimension × metric)
stored column-wise: a NumPy ``.npz`` archive (a zip of ``.npy`` arrays; read it with
``numpy.load(path)``, no pickling) that holds exactly the values the earlier ``metrics.csv``
held. Numbers are integers of fixed quanta — normalised score ×10⁴, effective weight ×10⁸,
points ×10⁶, ``-1`` = none — so nothing is lost to binary floats; raw values are the texts the
CSV showed; thresholds, weights and names are stored once per segment × metric rather than per
row. :func:`metric_csv_lines` turns it back into the CSV (``METRIC_COLUMNS``) byte for byte, and
:func:`metric_columns` into the columns the dashboard shows. For people:

    python -m health_score.loaders.explanation RUN_FOLDER/metrics.npz > metrics.csv
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from health_score.columns import AccountTable
from health_score.csvsafe import safe_cell, safe_column
from health_score.loaders.csv_output import (
    CONTEXT_COLUMNS,
    METRIC_COLUMNS,
    context_cells,
    csv_cell,
    number_text,
    score_columns,
)
from health_score.scoring.qualitative import rule_in_words
from health_score.scoring.spec import PLATFORM_VALUE
from health_score.scoring.vector import NONE, SCORED, STATUS_NAMES, Result, VectorModel

EXPLANATION = "metrics.npz"
FORMAT_VERSION = 1


def _published_texts(limit: int = 1000) -> list[str]:
    """``texts[v]`` is the one-decimal text of ``v`` tenths; ``texts[-1]`` is empty (no value)."""
    return [f"{v // 10}.{v % 10}" for v in range(limit + 1)] + [""]


PUBLISHED = _published_texts()


class Plain(list[str]):
    """A column this module wrote from numbers or booleans only (decimal digits, ``.``, a
    leading ``-``, ``true``/``false``, empty): nothing in it needs CSV quoting and no cell
    starts like a formula except plain numbers, which :mod:`health_score.csvsafe` leaves
    alone, so :func:`scores_csv_from_columns` need not scan it."""

    __slots__ = ()


def _published(values: NDArray[np.int64]) -> Plain:
    items: list[int] = values.tolist()
    if values.size and int(values.max()) >= len(PUBLISHED) - 1:
        return Plain(["" if v == NONE else f"{v // 10}.{v % 10}" for v in items])
    return Plain([PUBLISHED[v] for v in items])


SMALL = [str(i) for i in range(1000)]


def _counts(values: NDArray[np.int64]) -> Plain:
    items: list[int] = values.tolist()
    if values.size and (int(values.max()) >= len(SMALL) or int(values.min()) < 0):
        return Plain([str(v) for v in items])
    return Plain([SMALL[v] for v in items])


def _booleans(values: NDArray[np.bool_]) -> Plain:
    return Plain(["true" if v else "false" for v in values.tolist()])


def score_rows(
    vmodel: VectorModel, accounts: AccountTable, result: Result, ok: NDArray[np.bool_]
) -> list[list[str]]:
    """``scores.csv`` (``score_columns``) of the accounts where ``ok``, column by column."""
    config = vmodel.model.config
    keep = np.flatnonzero(ok)
    everything = len(keep) == accounts.size

    def pick(items: list[str]) -> list[str]:
        return items if everything else [items[i] for i in keep.tolist()]

    labels = config.tier_labels
    rules = config.cap_rules
    cap_value = [safe_cell(format(r.value, "f")) for r in rules] + [""]  # numbers: as they are
    words = [rule_in_words(r) for r in rules] + [""]
    condition = [r.condition for r in rules] + [""]
    dims = [i for i, d in enumerate(vmodel.model.dimensions) if d.name != PLATFORM_VALUE]
    signals = accounts.table.signals[keep]
    matched: list[int] = result.rule[keep].tolist()  # index into rules; -1: none matched
    columns: list[list[str]] = [
        pick(accounts.ids),
        pick(accounts.names),
        pick(accounts.segment_names),
        _published(result.quantitative[keep]),
        _published(result.final[keep]),
        [labels[t] for t in result.tier[keep].tolist()],
        _published(result.churn_risk[keep]),
        _published(result.platform_value[keep]),
        *(_published(result.dimensions[keep, d]) for d in dims),
        _published(result.coverage[keep]),
        _booleans(result.applied[keep]),
        [words[r] for r in matched],
        Plain([cap_value[r] for r in matched]),
        [condition[r] for r in matched],
        *(_counts(signals[:, j]) for j in range(4)),
        _booleans(result.low_coverage[keep]),
        *_context_columns(accounts, keep.tolist()),
    ]
    assert len(columns) == len(score_columns(config))
    return columns


def _context_columns(accounts: AccountTable, keep: list[int]) -> list[list[str]]:
    """The :data:`CONTEXT_COLUMNS` of the accounts ``keep``: empty unless the table was built
    from accounts that carry a context (a raw file carries none)."""
    inputs = accounts.inputs
    if inputs is None:
        return [Plain([""] * len(keep)) for _ in CONTEXT_COLUMNS]
    rows = [context_cells(inputs[i].context) for i in keep]
    # The owner is text (guarded when written); ARR, the date and the days are plain.
    owner, *rest = ([row[j] for row in rows] for j in range(len(CONTEXT_COLUMNS)))
    return [owner, *(Plain(column) for column in rest)]


def scores_csv_from_columns(header: Sequence[str], columns: Sequence[Sequence[str]]) -> bytes:
    """scores.csv from its columns, each cell guarded against formula injection
    (:mod:`health_score.csvsafe`); what ``csv.writer`` writes, joined directly when no cell
    needs quoting (the usual case: about five times as fast). :class:`Plain` columns (numbers
    and booleans this module wrote) are neither guarded nor scanned: they need neither."""
    columns = [c if isinstance(c, Plain) else safe_column(c) for c in columns]
    special = (",", '"', "\r", "\n")
    texts = (header, *(c for c in columns if not isinstance(c, Plain)))
    if any(ch in "\x00".join(column) for column in texts for ch in special):
        return scores_csv(header, zip(*columns, strict=True))
    lines = [",".join(header), *map(",".join, zip(*columns, strict=True))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def scores_csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _compact(values: NDArray[Any]) -> NDArray[Any]:
    """int32 where the values fit (they always do for a model whose weights sum to 1)."""
    if values.dtype == np.int32:
        return values
    if values.size and (values.max() > np.iinfo(np.int32).max or values.min() < -1):
        return values
    return values.astype(np.int32)


def explanation_bytes(
    vmodel: VectorModel, accounts: AccountTable, result: Result, ok: NDArray[np.bool_]
) -> bytes:
    """The ``metrics.npz`` of the accounts where ``ok``, in memory."""
    buffer = io.BytesIO()
    write_explanation(buffer, vmodel, accounts, result, ok)
    return buffer.getvalue()


def write_explanation(
    handle: BinaryIO,
    vmodel: VectorModel,
    accounts: AccountTable,
    result: Result,
    ok: NDArray[np.bool_],
) -> None:
    """Write the ``metrics.npz`` of the accounts where ``ok`` to ``handle``."""
    model = vmodel.model
    keep = np.flatnonzero(ok)
    segments = accounts.table.segments
    slots = [(dim, metric) for dim in model.dimensions for metric in dim.metrics]
    thresholds = {
        name: np.array(
            [
                [
                    "" if (band := m.bands.get(s)) is None else number_text(getattr(band, name))
                    for _, m in slots
                ]
                for s in segments
            ],
            dtype=np.str_,
        ).reshape(len(segments), len(slots))
        for name in ("green", "yellow", "red")
    }
    everything = len(keep) == accounts.size
    ids = accounts.ids if everything else [accounts.ids[i] for i in keep]
    arrays: dict[str, NDArray[Any]] = {
        "format_version": np.array([FORMAT_VERSION]),
        "account_id": np.array(ids, dtype=np.str_),
        "segments": np.array(segments, dtype=np.str_),
        "segment": accounts.table.segment[keep].astype(np.int16),
        "dimension": np.array([d.name for d, _ in slots], dtype=np.str_),
        "metric": np.array([m.name for _, m in slots], dtype=np.str_),
        "lower_is_better": np.array([m.lower_is_better for _, m in slots], dtype=bool),
        "weight_in_dimension": np.array([number_text(m.weight) for _, m in slots], dtype=np.str_),
        **thresholds,
        "metrics": np.array(accounts.table.metrics, dtype=np.str_),
        "slot_metric": np.array(vmodel.slot_column, dtype=np.int16),
        "raw_value": accounts.raw_text if everything else accounts.raw_text[:, keep],
        "status": result.status if everything else result.status[keep],
        **{
            name: _compact(values if everything else values[keep])
            for name, values in (
                ("normalised_score", result.score),
                ("effective_weight", result.effective),
                ("points", result.points),
            )
        },
    }
    np.savez(handle, allow_pickle=False, **arrays)


def load_explanation(data: bytes) -> dict[str, NDArray[Any]]:
    """The arrays of a ``metrics.npz`` (ValueError if it is not one)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, EOFError, KeyError) as exc:  # zipfile.BadZipFile is an OSError subclass
        raise ValueError(f"not a metrics.npz archive ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, numpy format errors
        raise ValueError(f"not a metrics.npz archive ({type(exc).__name__}: {exc})") from None
    missing = [n for n in ("account_id", "status", "normalised_score", "points") if n not in arrays]
    if missing:
        raise ValueError(f"metrics.npz lacks {', '.join(missing)}")
    return arrays


def _fixed(values: NDArray[Any], places: int) -> list[str]:
    unit = 10**places
    return ["" if v < 0 else f"{v // unit}.{v % unit:0{places}d}" for v in values.ravel().tolist()]


def metric_csv_lines(data: bytes) -> Iterator[str]:
    """The explanation as CSV text, line by line (header first): the ``metrics.csv`` of before,
    its text cells guarded against formula injection (:mod:`health_score.csvsafe`)."""
    a = load_explanation(data)
    yield ",".join(METRIC_COLUMNS) + "\n"
    slots = len(a["metric"])
    names = [
        f"{csv_cell(safe_cell(str(d)))},{csv_cell(safe_cell(str(m)))}"
        for d, m in zip(a["dimension"].tolist(), a["metric"].tolist(), strict=True)
    ]
    directions = ["true" if x else "false" for x in a["lower_is_better"].tolist()]
    weights = [str(w) for w in a["weight_in_dimension"].tolist()]
    bands = [
        [
            f"{directions[k]},{a['green'][s, k]},{a['yellow'][s, k]},{a['red'][s, k]}"
            for k in range(slots)
        ]
        for s in range(len(a["segments"]))
    ]
    slot_metric = a["slot_metric"].tolist()
    statuses = [str(s) for s in STATUS_NAMES]
    for i, account_id in enumerate(a["account_id"].tolist()):
        prefix = csv_cell(safe_cell(account_id))
        thresholds = bands[int(a["segment"][i])]
        raw = [v.decode("utf-8") for v in a["raw_value"][:, i].tolist()]
        status = a["status"][i].tolist()
        score = _fixed(a["normalised_score"][i], 4)
        effective = _fixed(a["effective_weight"][i], 8)
        points = _fixed(a["points"][i], 6)
        out = []
        for k in range(slots):
            scored = status[k] == SCORED
            out.append(
                f"{prefix},{names[k]},{statuses[status[k]]},{raw[slot_metric[k]]},"
                f"{thresholds[k]},{score[k]},{weights[k]},"
                f"{effective[k] if scored else '0'},{points[k]}\n"
            )
        yield "".join(out)


def metric_columns(data: bytes) -> dict[str, NDArray[Any]]:
    """The explanation as long columns (``METRIC_COLUMNS``; numbers as float64, NaN = none)."""
    a = load_explanation(data)
    n = len(a["account_id"])
    slots = len(a["metric"])
    segment = np.repeat(a["segment"].astype(np.intp), slots)
    slot = np.tile(np.arange(slots), n)
    status = a["status"].ravel()
    scored = status == SCORED

    def numbers(values: NDArray[Any], unit: float) -> NDArray[np.float64]:
        flat = values.ravel()
        return np.where(flat < 0, np.nan, flat / unit)

    def band(name: str) -> NDArray[np.float64]:
        texts = a[name]
        table = np.where(texts == "", "nan", texts).astype(np.float64)
        return table[segment, slot]

    raw = a["raw_value"][a["slot_metric"].astype(np.intp)].T.ravel()
    raw_numbers = np.where(raw == b"", b"nan", raw).astype(np.float64)
    weights = np.array([float(w) for w in a["weight_in_dimension"].tolist()])
    return {
        "account_id": np.repeat(a["account_id"], slots).astype(object),
        "dimension": np.tile(a["dimension"], n).astype(object),
        "metric": np.tile(a["metric"], n).astype(object),
        "status": np.array(STATUS_NAMES, dtype=object)[status],
        "raw_value": raw_numbers,
        "lower_is_better": np.tile(a["lower_is_better"], n),
        "green": band("green"),
        "yellow": band("yellow"),
        "red": band("red"),
        "normalised_score": numbers(a["normalised_score"], 1e4),
        "weight_in_dimension": np.tile(weights, n),
        "effective_weight": np.where(scored, a["effective_weight"].ravel() / 1e8, 0.0),
        "points": numbers(a["points"], 1e6),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print a run's explanation as CSV (the ``metrics.csv`` layout)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m health_score.loaders.explanation RUN/metrics.npz", file=sys.stderr)
        return 2
    path = Path(args[0])
    if path.is_dir():
        path = path / EXPLANATION
    try:
        lines = metric_csv_lines(path.read_bytes())
        for line in lines:
            sys.stdout.write(line)
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
