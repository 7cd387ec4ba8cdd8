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
from pathlib import Path
from typing import overload

import numpy as np
from numpy.typing import NDArray

from health_score.config import CSV_FIELD_LIMIT, shown
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

MAX_DIGITS = 15
PAD = 32  # zero bytes after a file's end (more than the widest cell read)
GROUP = 8  # columns gathered at once
TEXT_WIDTH = 256  # the widest id or name read array-wise
#: Bytes that make a text cell unusual for the array-wise reader: control bytes (tabs and the
#: like, which ``str.strip`` would remove at either end) and non-ASCII ones.
UNPLAIN = np.zeros(256, dtype=bool)
UNPLAIN[1:32] = True
UNPLAIN[127:] = True
#: Bytes a plain decimal literal's cells may hold (zero: padding), first and later.
_LATER_BYTE = np.zeros(256, dtype=bool)
_LATER_BYTE[[0, ord("."), *range(ord("0"), ord("9") + 1)]] = True
_FIRST_BYTE = _LATER_BYTE.copy()
_FIRST_BYTE[ord("-")] = True


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
    raw_text: NDArray[np.bytes_]  # metrics × accounts
    inputs: Sequence[AccountInput] | None = None

    @property
    def size(self) -> int:
        return len(self.ids)

    def account(self, index: int) -> AccountInput:
        if self.inputs is not None:
            return self.inputs[index]
        values: dict[str, Decimal | None] = {}
        for column, metric in enumerate(self.table.metrics):
            text = self.raw_text[column, index]
            values[metric] = Decimal(text.decode("ascii")) if text else None
        row = self.table.signals[index]
        counts = dict(zip(SIGNAL_FIELDS, (int(c) for c in row), strict=True))
        signals = SignalCounts(**counts) if any(counts.values()) else NO_SIGNALS
        return AccountInput(
            self.ids[index], self.names[index], self.segment_names[index], values, signals
        )

    def value(self, index: int, column: int) -> Decimal | None:
        """Account ``index``'s exact value of metric ``column`` (None = no value)."""
        if self.inputs is not None:
            return self.inputs[index].metrics.get(self.table.metrics[column])
        text = self.raw_text[column, index]
        return Decimal(text.decode("ascii")) if text else None

    def values(self, column: int, rows: NDArray[np.intp]) -> list[Decimal | None]:
        """Exact values of metric ``column`` for the accounts ``rows``."""
        if self.inputs is not None:
            name = self.table.metrics[column]
            return [self.inputs[i].metrics.get(name) for i in rows.tolist()]
        return [
            Decimal(text.decode("ascii")) if text else None
            for text in self.raw_text[column, rows].tolist()
        ]

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
        raw_text = (
            np.array(texts, dtype=np.bytes_).reshape(n, m).T.copy() if n else np.zeros((m, 0), "S1")
        )
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
    except (_Unusual, csv.Error, OSError, UnicodeDecodeError):
        raw: RawFile = read_raw(path, config)  # raises the raw-file reader's errors
        table = AccountTable.from_accounts(raw.accounts, config)
        return RawTable(table, raw.warnings, raw.source_bytes)


def _fast(path: Path, data: bytes, text: str, config: ScoringConfig) -> RawTable:
    first = text[: text.find("\n") + 1]  # the header line (a StringIO of the file costs ~50 ms)
    source = text if '"' in first or "\r" in first or not first else first
    header = [h.strip() for h in next(csv.reader(io.StringIO(source), strict=True), [])]
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
        f"{path}: column {shown(c)} is not a metric of the config; ignored"
        for c in header
        if c and c not in known
    ]
    if "segment" not in header:
        warnings.append(
            f"{path}: no segment column; every account is scored as {DEFAULT_SEGMENT!r}"
        )
    index = {name: i for i, name in enumerate(header)}
    cells = _Cells.of(data.removeprefix(b"\xef\xbb\xbf"), len(header), text)
    n = cells.rows
    if not n:
        raise _Unusual
    wanted = [c for c in ("account_id", "segment", "account_name") if c in index]
    texts_of = dict(zip(wanted, cells.texts([index[c] for c in wanted]), strict=True))
    ids = texts_of["account_id"]
    if not all(ids) or len(set(ids)) != n:
        raise _Unusual  # an empty or duplicate id: the raw-file reader names the line
    segments = tuple(sorted(config.segments))
    segment_index = {s: i for i, s in enumerate(segments)}
    segment_names = texts_of.get("segment") or [DEFAULT_SEGMENT] * n
    try:
        segment = np.array([segment_index[s] for s in segment_names], dtype=np.int64)
    except KeyError:
        raise _Unusual from None
    if "account_name" in texts_of:
        names = [
            name or account_id
            for name, account_id in zip(texts_of.pop("account_name"), ids, strict=True)
        ]
    else:
        names = list(ids)
    del texts_of
    values = np.full((n, len(metrics)), np.nan, order="F")
    places = [0] * len(metrics)
    texts: list[NDArray[np.uint8]] = []
    present = [j for j, metric in enumerate(metrics) if metric in index]
    blocks = dict(zip(present, cells.blocks([index[metrics[j]] for j in present]), strict=True))
    for j in range(len(metrics)):
        chars = blocks.get(j)
        if chars is None:
            texts.append(np.zeros((n, 1), dtype=np.uint8))
            continue
        values[:, j], places[j] = _plain_decimals(chars)
        texts.append(chars)
    width = max(t.shape[1] for t in texts)
    raw_text = np.zeros((len(texts), n), dtype=f"S{width}")
    for j, chars in enumerate(texts):
        raw_text[j] = np.ascontiguousarray(chars).view(f"S{chars.shape[1]}")[:, 0]
    count_columns = (*SIGNAL_COLUMNS, *OPTIONAL_SIGNAL_COLUMNS)
    given = [column for column in count_columns if column in index]
    c = {column: np.zeros(n, dtype=np.int64) for column in count_columns}
    for column, chars in zip(given, cells.blocks([index[x] for x in given]), strict=True):
        c[column] = _whole_numbers(chars)
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
    table = Table(
        metrics=metrics,
        values=values,
        segments=segments,
        segment=segment,
        signals=signals,
        unavailable=np.zeros(values.shape, dtype=bool),
        exact=np.zeros(n, dtype=bool),
        places=tuple(places),
    )
    return RawTable(AccountTable(table, ids, names, segment_names, raw_text), tuple(warnings), data)


@dataclass(frozen=True, slots=True)
class _Cells:
    """The cells of a CSV's data rows as (start, end) offsets into bytes, column by column."""

    buffers: list[NDArray[np.uint8]]  # per column (quoted files) or one for all
    starts: NDArray[np.int64]  # rows × columns
    ends: NDArray[np.int64]
    raw: list[bytes]
    rows: int
    shared: bool = False  # one buffer (the file) for every column

    @classmethod
    def of(cls, data: bytes, width: int, text: str) -> _Cells:
        if b'"' in data or b"\r" in data:
            return cls._quoted(text, width)
        if not data.endswith(b"\n"):
            data += b"\n"
        # Zero bytes after the end, so a cell's bytes can be read a fixed width at a time.
        buf = np.frombuffer(data + bytes(PAD), dtype=np.uint8)
        # Two comparisons are about three times as fast as a lookup table over the file.
        separators = np.flatnonzero((buf == 44) | (buf == 10))
        if len(buf) < 2**31:
            separators = separators.astype(np.int32)
        newlines = np.flatnonzero(buf[separators] == 10)
        # Every line has ``width`` cells exactly when the line ends are every width-th
        # separator (a separator is a comma or a line end), the header's included.
        lines, extra = divmod(len(separators), width)
        if (
            not lines
            or extra  # a row with more or fewer cells (or a blank line)
            or len(newlines) != lines
            or not (newlines == np.arange(width - 1, len(separators), width)).all()
        ):
            raise _Unusual
        header_end = int(separators[width - 1])
        separators = separators[width:]  # the header's
        rows = lines - 1
        grid = separators.reshape(rows, width)
        starts = np.empty_like(grid)
        starts[:, 1:] = grid[:, :-1] + 1
        starts[1:, 0] = grid[:-1, -1] + 1
        if rows:
            starts[0, 0] = header_end + 1  # after the header
        if len(data) > CSV_FIELD_LIMIT and int((grid - starts).max(initial=0)) > CSV_FIELD_LIMIT:
            raise _Unusual  # a cell the csv module would refuse: the raw-file reader says where
        return cls([buf], starts, grid, [data], rows, shared=True)

    @classmethod
    def _quoted(cls, text: str, width: int) -> _Cells:
        rows = list(csv.reader(io.StringIO(text), strict=True))[1:]
        if any(len(row) != width for row in rows):
            raise _Unusual
        buffers: list[NDArray[np.uint8]] = []
        raw: list[bytes] = []
        n = len(rows)
        starts = np.zeros((n, width), dtype=np.int64)
        ends = np.zeros((n, width), dtype=np.int64)
        for j, column in enumerate(zip(*rows, strict=True) if rows else ()):
            joined = "\n".join(column).encode("utf-8") + b"\n"
            buf = np.frombuffer(joined, dtype=np.uint8)
            stops = np.flatnonzero(buf == 10)
            if len(stops) != n:
                raise _Unusual  # a cell with a line break in it
            ends[:, j] = stops
            starts[1:, j] = stops[:-1] + 1
            buffers.append(buf)
            raw.append(joined)
        return cls(buffers, starts, ends, raw, n)

    def _buffer(self, column: int) -> tuple[NDArray[np.uint8], bytes]:
        if self.shared:
            return self.buffers[0], self.raw[0]
        return self.buffers[column], self.raw[column]

    def texts(self, columns: Sequence[int]) -> list[list[str]]:
        """The cells of ``columns`` as text (stripped), column by column."""
        out = []
        decoded: dict[int, str] = {}
        for column in columns:
            fast = self._plain_texts(column)
            if fast is not None:
                out.append(fast)
                continue
            _, raw = self._buffer(column)
            spans = zip(self.starts[:, column].tolist(), self.ends[:, column].tolist(), strict=True)
            if raw.isascii():  # byte offsets are character offsets: slice the text
                text = decoded.get(id(raw))
                if text is None:
                    text = decoded[id(raw)] = raw.decode("ascii")
                out.append([text[s:e].strip() for s, e in spans])
                continue
            try:
                out.append([raw[s:e].decode("utf-8").strip() for s, e in spans])
            except UnicodeDecodeError:
                raise _Unusual from None
        return out

    def blocks(
        self, columns: Sequence[int], limit: int = MAX_DIGITS + 2
    ) -> list[NDArray[np.uint8]]:
        """Like :meth:`chars` for several columns at once (one pass through the file)."""
        if not self.shared or not columns:
            return [self.chars(c) for c in columns]
        buf = self.buffers[0]
        out: list[NDArray[np.uint8]] = []
        for group in range(0, len(columns), GROUP):  # a few columns at a time: less memory
            part = list(columns[group : group + GROUP])
            starts = self.starts[:, part]
            lengths = self.ends[:, part] - starts
            widths = lengths.max(axis=0) if len(starts) else np.zeros(len(part), dtype=np.int64)
            if (widths > limit).any():
                raise _Unusual
            width = max(int(widths.max(initial=0)), 1)
            # Every cell's first ``width`` bytes in one gather (the buffer ends in zeros), then
            # the bytes past each cell cleared: columns × rows × bytes.
            block = np.lib.stride_tricks.sliding_window_view(buf, width)[starts.T]
            block *= np.arange(width, dtype=np.int32) < lengths.T[..., None]
            out.extend(block[j, :, : max(int(w), 1)] for j, w in enumerate(widths.tolist()))
        return out

    def _plain_texts(self, column: int) -> list[str] | None:
        """An ASCII column without spaces or control bytes, as strings, read array-wise
        (None: read it cell by cell)."""
        if not self.shared or not self.rows or not self.raw[0].isascii():
            return None
        try:
            (block,) = self.blocks([column], limit=TEXT_WIDTH)
        except _Unusual:
            return None
        lengths = self.ends[:, column] - self.starts[:, column]
        last = block[np.arange(len(block)), np.maximum(lengths - 1, 0)]
        if (
            ((block != 0).sum(axis=1) != lengths).any()
            or UNPLAIN[block].any()
            or (block[:, 0] == 32).any()  # what strip() would remove
            or (last == 32).any()
        ):
            return None
        width = block.shape[1]
        texts: list[str] = (
            np.ascontiguousarray(block).view(f"S{width}")[:, 0].astype(f"U{width}").tolist()
        )
        return texts

    def chars(self, column: int) -> NDArray[np.uint8]:
        """The column's cells as a rows × longest-cell matrix of bytes (zero-padded)."""
        buf, _ = self._buffer(column)
        starts = self.starts[:, column]
        lengths = self.ends[:, column] - starts
        width = max(int(lengths.max()) if len(lengths) else 0, 1)
        if width > MAX_DIGITS + 2:
            raise _Unusual
        padded = np.concatenate([buf, np.zeros(width, dtype=np.uint8)])
        block = np.lib.stride_tricks.sliding_window_view(padded, width)[starts]
        block *= np.arange(width, dtype=np.int64) < lengths[:, None]
        return np.ascontiguousarray(block)


def _plain_decimals(chars: NDArray[np.uint8]) -> tuple[NDArray[np.float64], int]:
    """A column of plain decimal literals (bytes × rows, zero-padded) as floats (NaN = empty)
    and the most decimal places any has.

    Plain: an optional ``-``, digits (at most 15, no leading zero before another digit), an
    optional ``.`` followed by digits. Such a literal is exactly the ``Decimal`` the raw-file
    reader would build (and prints the same); its float is the integer of its digits divided
    by a power of ten, both exact in float64, so the division rounds correctly, like
    ``float(text)``; and float64 orders such numbers exactly.
    """
    n = chars.shape[0]
    c = np.ascontiguousarray(chars.T)  # one row per byte position: fast to scan
    d = c - np.uint8(48)
    is_digit = d <= 9  # wraps below '0'
    is_dot = c == 46
    pad = c == 0
    # The form, checked on every byte position at once.
    ok = _FIRST_BYTE[c[0]] & ~is_dot[0] & ~is_dot[-1]  # no point first or last
    if len(c) > 1:
        ok &= _LATER_BYTE[c[1:]].all(axis=0)
        bad = pad[:-1] & ~pad[1:]  # padding only after the literal
        bad |= is_dot[1:] & ~is_digit[:-1]  # a point follows a digit
        bad |= is_dot[:-1] & pad[1:]  # and is not last
        ok &= ~bad.any(axis=0)
        ok &= ~((c[0] == 48) & is_digit[1])  # no leading zero before another digit,
        if len(c) > 2:
            ok &= ~((c[0] == 45) & (c[1] == 48) & is_digit[2])  # after a minus either
    digits = np.count_nonzero(is_digit, axis=0)
    ok &= (np.count_nonzero(is_dot, axis=0) <= 1) & (digits >= 1) & (digits <= MAX_DIGITS)
    empty = c[0] == 0
    if not (ok | empty).all():
        raise _Unusual
    mantissa = np.zeros(n, dtype=np.int64)
    after = np.zeros(n, dtype=np.int64)  # digits after the point
    seen_dot = np.zeros(n, dtype=bool)
    for k in range(len(c)):
        digit = is_digit[k]
        mantissa = np.where(digit, mantissa * 10 + d[k], mantissa)
        seen_dot |= is_dot[k]
        after += digit & seen_dot
    values = mantissa / (10.0**after)
    places = int(after.max(initial=0))
    return np.where(empty, np.nan, np.where(c[0] == 45, -values, values)), places


def _whole_numbers(chars: NDArray[np.uint8]) -> NDArray[np.int64]:
    """A count column (bytes × rows, zero-padded): digits only (at most 15), empty = 0."""
    n = chars.shape[0]
    out = np.zeros(n, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    ended = np.zeros(n, dtype=bool)
    for k in range(chars.shape[1]):
        c = chars[:, k]
        pad = c == 0
        is_digit = (c - np.uint8(48)) <= 9
        ok &= (is_digit | pad) & ~(ended & ~pad)
        ended |= pad
        out = np.where(is_digit, out * 10 + (c.astype(np.int64) - 48), out)
    if not ok.all() or chars.shape[1] > MAX_DIGITS:
        raise _Unusual
    return out
