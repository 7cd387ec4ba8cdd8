"""A portfolio held column-wise (:class:`AccountTable`): what the array scorer reads.

Built straight from a raw-metrics file (:func:`read_raw_table`: no ``Decimal`` per cell, no
object per account) or from accounts already in memory (:meth:`AccountTable.from_accounts`, live
and demo runs). The raw file's fast reader accepts only what it can check column-wise — plain
decimal literals (``-12.5``, at most 15 digits, no exponent, no leading zeros), whole counts and
empty cells; any other file (``NA`` cells, blank lines, a bad cell, a duplicate id…) is read by
:func:`health_score.rawfile.read_raw`, so its accounts, warnings and error messages are exactly
those of the raw-file reader.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import overload

import numpy as np
from numpy.typing import NDArray

from health_score.loaders.csv_output import number_text
from health_score.rawfile import (
    DEFAULT_SEGMENT,
    OPTIONAL_SIGNAL_COLUMNS,
    SIGNAL_COLUMNS,
    RawFile,
    read_raw,
)
from health_score.records import NO_SIGNALS, AccountInput, SignalCounts
from health_score.scoring.spec import ScoringConfig
from health_score.scoring.vector import SIGNAL_FIELDS, Table, float_exact, signal_row

CHUNK_ROWS = 20_000
MAX_DIGITS = 15


@dataclass(frozen=True, slots=True)
class AccountTable:
    """Accounts column-wise, plus what the output files need (ids, names, raw value texts).

    ``raw_text`` holds each value as the explanation shows it (the literal as written for the
    fast reader's plain literals); ``inputs`` keeps the accounts when the table was built from
    them. :meth:`account` gives one account back as an :class:`AccountInput` with exact values.
    """

    table: Table
    ids: list[str]
    names: list[str]
    segment_names: list[str]
    raw_text: NDArray[np.bytes_]  # accounts × metrics
    inputs: Sequence[AccountInput] | None = None

    @property
    def size(self) -> int:
        return len(self.ids)

    def account(self, index: int) -> AccountInput:
        if self.inputs is not None:
            return self.inputs[index]
        values: dict[str, Decimal | None] = {}
        for column, metric in enumerate(self.table.metrics):
            text = self.raw_text[index, column]
            values[metric] = Decimal(text.decode("ascii")) if text else None
        row = self.table.signals[index]
        counts = dict(zip(SIGNAL_FIELDS, (int(c) for c in row), strict=True))
        signals = SignalCounts(**counts) if any(counts.values()) else NO_SIGNALS
        return AccountInput(
            self.ids[index], self.names[index], self.segment_names[index], values, signals
        )

    def accounts(self) -> Accounts:
        return Accounts(self)

    @classmethod
    def from_accounts(cls, accounts: Sequence[AccountInput], config: ScoringConfig) -> AccountTable:
        """A table of accounts already in memory (their exact values are kept beside it)."""
        metrics = config.metric_names
        segments = tuple(sorted(config.segments))
        segment_index = {s: i for i, s in enumerate(segments)}
        n, m = len(accounts), len(metrics)
        values = np.full((n, m), np.nan)
        unavailable = np.zeros((n, m), dtype=bool)
        exact = np.zeros(n, dtype=bool)
        texts: list[list[bytes]] = []
        signals = np.zeros((n, len(SIGNAL_FIELDS)), dtype=np.int64)
        floats: dict[Decimal, tuple[float, bool]] = {}
        for i, account in enumerate(accounts):
            row_text: list[bytes] = []
            for j, metric in enumerate(metrics):
                value = account.metrics.get(metric)
                if value is None:
                    row_text.append(b"")
                    unavailable[i, j] = metric in account.unavailable
                    continue
                cached = floats.get(value)
                if cached is None:
                    cached = floats[value] = (float(value), float_exact(value))
                values[i, j] = cached[0]
                exact[i] |= not cached[1]
                row_text.append(number_text(value).encode("utf-8"))
            texts.append(row_text)
            signals[i] = signal_row(account.signals)
        raw_text = np.array(texts, dtype=np.bytes_).reshape(n, m) if n else _empty_text(n, m)
        table = Table(
            metrics=metrics,
            values=values,
            segments=segments,
            segment=np.array([segment_index.get(a.segment, -1) for a in accounts], dtype=np.int64),
            signals=signals,
            unavailable=unavailable,
            exact=exact,
        )
        return cls(
            table,
            [a.account_id for a in accounts],
            [a.account_name for a in accounts],
            [a.segment for a in accounts],
            raw_text,
            accounts,
        )


class Accounts(Sequence[AccountInput]):
    """The accounts of a table as a read-only sequence, each built when asked for."""

    def __init__(self, table: AccountTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.size

    @overload
    def __getitem__(self, index: int) -> AccountInput: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[AccountInput]: ...
    def __getitem__(self, index: int | slice) -> AccountInput | Sequence[AccountInput]:
        if isinstance(index, slice):
            return [self.table.account(i) for i in range(*index.indices(self.table.size))]
        if index < 0:
            index += self.table.size
        if not 0 <= index < self.table.size:
            raise IndexError(index)
        return self.table.account(index)

    def __iter__(self) -> Iterator[AccountInput]:
        return (self.table.account(i) for i in range(self.table.size))


def _empty_text(n: int, m: int) -> NDArray[np.bytes_]:
    return np.zeros((n, m), dtype="S1")


# --------------------------------------------------------------------------------------------
# The raw file, column-wise


@dataclass(frozen=True, slots=True)
class RawTable:
    """What :func:`read_raw_table` read: the table, the warnings and the file's bytes."""

    accounts: AccountTable
    warnings: tuple[str, ...]
    source_bytes: bytes


class _Unusual(Exception):
    """Something the fast reader does not check itself; the raw-file reader takes over."""


def read_raw_table(path: Path, config: ScoringConfig) -> RawTable:
    """Read and validate a raw-metrics file into a table (same rules as ``read_raw``)."""
    try:
        data = path.read_bytes()
        return _fast(path, data, data.decode("utf-8-sig").removeprefix("\ufeff"), config)
    except (_Unusual, OSError, UnicodeDecodeError):
        raw: RawFile = read_raw(path, config)  # raises the raw-file reader's errors
        table = AccountTable.from_accounts(raw.accounts, config)
        return RawTable(table, raw.warnings, raw.source_bytes)


def _fast(path: Path, data: bytes, text: str, config: ScoringConfig) -> RawTable:
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    metrics = config.metric_names
    if "account_id" not in header or not any(m in header for m in metrics):
        raise _Unusual
    known = {
        "account_id",
        "account_name",
        "segment",
        "period",
        *metrics,
        *SIGNAL_COLUMNS,
        *OPTIONAL_SIGNAL_COLUMNS,
    }
    warnings = [
        f"{path}: column {c!r} is not a metric of the config; ignored"
        for c in header
        if c and c not in known
    ]
    if "segment" not in header:
        warnings.append(
            f"{path}: no segment column; every account is scored as {DEFAULT_SEGMENT!r}"
        )
    index = {name: i for i, name in enumerate(header)}
    width = len(header)
    segments = tuple(sorted(config.segments))
    segment_index = {s: i for i, s in enumerate(segments)}
    ids: list[str] = []
    names: list[str] = []
    segment_names: list[str] = []
    segment_codes: list[NDArray[np.int64]] = []
    value_parts: list[NDArray[np.float64]] = []
    text_parts: list[NDArray[np.bytes_]] = []
    count_parts: list[NDArray[np.int64]] = []
    seen: set[str] = set()
    count_columns = (*SIGNAL_COLUMNS, *OPTIONAL_SIGNAL_COLUMNS)
    while True:
        rows = list(islice(reader, CHUNK_ROWS))
        if not rows:
            break
        if any(len(row) != width for row in rows):
            raise _Unusual  # short, long or blank lines: the raw-file reader says what to do
        columns = list(zip(*rows, strict=True))
        del rows
        chunk_ids = [cell.strip() for cell in columns[index["account_id"]]]
        if not all(chunk_ids):
            raise _Unusual
        seen.update(chunk_ids)
        ids.extend(chunk_ids)
        if len(seen) != len(ids):
            raise _Unusual  # a duplicate id
        if "segment" in index:
            chunk_segments = [cell.strip() for cell in columns[index["segment"]]]
        else:
            chunk_segments = [DEFAULT_SEGMENT] * len(chunk_ids)
        try:
            segment_codes.append(
                np.array([segment_index[s] for s in chunk_segments], dtype=np.int64)
            )
        except KeyError:
            raise _Unusual from None
        segment_names.extend(chunk_segments)
        if "account_name" in index:
            names.extend(
                name.strip() or account_id
                for name, account_id in zip(columns[index["account_name"]], chunk_ids, strict=True)
            )
        else:
            names.extend(chunk_ids)
        size = len(chunk_ids)
        values = np.full((size, len(metrics)), np.nan)
        texts: list[NDArray[np.bytes_]] = []
        for j, metric in enumerate(metrics):
            at = index.get(metric)
            if at is None:
                texts.append(np.zeros(size, dtype="S1"))
                continue
            cells = np.array(columns[at], dtype=np.str_)
            numbers, empty = _plain_decimals(cells)
            values[~empty, j] = numbers
            texts.append(cells.astype(np.bytes_))
        value_parts.append(values)
        width_text = max(t.dtype.itemsize for t in texts)
        text_parts.append(np.stack([t.astype(f"S{width_text}") for t in texts], axis=1))
        counts = np.zeros((size, len(count_columns)), dtype=np.int64)
        for j, column in enumerate(count_columns):
            at = index.get(column)
            if at is not None:
                counts[:, j] = _whole_numbers(np.array(columns[at], dtype=np.str_))
        count_parts.append(counts)
    if not ids:
        raise _Unusual
    counts = np.concatenate(count_parts)
    c = {name: counts[:, j] for j, name in enumerate(count_columns)}
    signals = np.stack(
        [
            np.maximum(c["critical_count"], c["critical_confirmed"]),
            np.maximum(c["moderate_count"], c["moderate_confirmed"]),
            np.maximum(c["watch_count"], c["watch_confirmed"]),
            c["critical_confirmed"],
            c["moderate_confirmed"],
            c["watch_confirmed"],
        ],
        axis=1,
    )
    width_text = max(p.dtype.itemsize for p in text_parts)
    raw_text = np.concatenate([p.astype(f"S{width_text}") for p in text_parts])
    values = np.concatenate(value_parts)
    table = Table(
        metrics=metrics,
        values=values,
        segments=segments,
        segment=np.concatenate(segment_codes),
        signals=signals,
        unavailable=np.zeros(values.shape, dtype=bool),
        exact=np.zeros(len(ids), dtype=bool),
    )
    return RawTable(AccountTable(table, ids, names, segment_names, raw_text), tuple(warnings), data)


def _codes(cells: NDArray[np.str_]) -> NDArray[np.uint32]:
    width = max(cells.dtype.itemsize // 4, 1)
    if cells.dtype.itemsize == 0:
        return np.zeros((cells.shape[0], 1), dtype=np.uint32)
    return cells.view(np.uint32).reshape(cells.shape[0], width)


def _plain_decimals(cells: NDArray[np.str_]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """The floats of a column of plain decimal literals, and which cells are empty.

    Plain: an optional ``-``, digits (at most 15, no leading zero before another digit), an
    optional ``.`` followed by digits. Such a literal is exactly the ``Decimal`` the raw-file
    reader would build (and prints the same), and float64 orders such numbers exactly.
    """
    codes = _codes(cells)
    pad = codes == 0
    empty = pad[:, 0]
    if empty.all():
        return np.zeros(0), empty
    digit = (codes >= 48) & (codes <= 57)
    dot = codes == 46
    minus = codes == 45
    length = (~pad).sum(axis=1)
    position = np.arange(codes.shape[1])
    sign = minus[:, 0]
    first = sign.astype(np.int64)  # where the digits start
    rows = np.arange(codes.shape[0])
    width = codes.shape[1]

    def at(offset: NDArray[np.int64]) -> NDArray[np.uint32]:
        inside = offset < width
        return np.where(inside, codes[rows, np.minimum(offset, width - 1)], 0)

    dots = dot.sum(axis=1)
    dot_at = np.where(dots > 0, dot.argmax(axis=1), length)
    ok = (
        (pad == (position >= length[:, None])).all(axis=1)  # padding only at the end
        & (digit | dot | pad | (minus & (position == 0))).all(axis=1)
        & (dots <= 1)
        & (digit.sum(axis=1) >= 1)
        & (digit.sum(axis=1) <= MAX_DIGITS)
        & (dot_at > first)  # a digit before the point
        & (dot_at != length - 1)  # and one after it
        & ~((at(first) == 48) & (dot_at > first + 1))  # no leading zero
    )
    if not (ok | empty).all():
        raise _Unusual
    return cells[~empty].astype(np.float64), empty


def _whole_numbers(cells: NDArray[np.str_]) -> NDArray[np.int64]:
    """A count column: digits only (at most 15), empty = 0."""
    codes = _codes(cells)
    pad = codes == 0
    digit = (codes >= 48) & (codes <= 57)
    length = (~pad).sum(axis=1)
    position = np.arange(codes.shape[1])
    ok = (pad == (position >= length[:, None])).all(axis=1) & (digit | pad).all(axis=1)
    if not ok.all() or (length > MAX_DIGITS).any():
        raise _Unusual
    out = np.zeros(cells.shape[0], dtype=np.int64)
    filled = length > 0
    if filled.any():
        out[filled] = cells[filled].astype(np.int64)
    return out
