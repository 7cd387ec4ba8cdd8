"""Intercom from a conversation export (CSV) instead of the API: the same five metrics.

One row per conversation, as Intercom's conversation reports export it (Reports → a
conversations report → Export CSV, or the Reporting Data Export API's ``conversation``
dataset). Columns are matched by name, case-insensitively; each has the name Intercom's
reports give it and a few accepted aliases (:data:`COLUMNS`). Each row is read into the very
record the API mode builds (:func:`~health_score.sources.intercom.metrics.parse_conversation`
over the row put in the API's shape), so the definitions cannot drift apart: the window
``[as_of - lookback_days, as_of)`` on the creation instant, outbound conversations
(``exclude_delivered_as``) not measured, a period read after its end counting no reply or
close from ``as_of`` on (:func:`~health_score.sources.intercom.metrics.seen_at`).

Attribution is by the row's ``Company ID`` (the organisation's ``company_id``, the mapping's
``intercom_company_id``). The export names no contact's companies, so a row without a company is
counted as unattributed (the API mode would try its first contact's first company).

The whole file is read and checked before any source runs: a problem is an
:class:`ExportError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from health_score.records import Account, MetricValue
from health_score.sources.base import SourceResult
from health_score.sources.intercom.metrics import (
    METRICS,
    Conversation,
    Rules,
    company_metrics,
    parse_conversation,
    seen_at,
)
from health_score.sources.intercom.settings import SOURCE, Settings

log = logging.getLogger(__name__)

#: Column → accepted header names (compared case-insensitively, surrounding spaces ignored);
#: the first is the name Intercom's conversation reports use and the sandbox writes.
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("Conversation ID", "conversation_id", "id"),
    "created_at": (
        "Created at",
        "Conversation created at",
        "Conversation started at",
        "conversation_created_at",
        "created_at",
    ),
    "company_id": ("Company ID", "Company company_id", "company_id"),
    "state": ("State", "Conversation state", "conversation_state", "state"),
    "delivered_as": ("Delivered as", "Source delivered as", "source.delivered_as", "delivered_as"),
    "tags": ("Tags", "Conversation tags", "conversation_tags", "tags"),
    "time_to_admin_reply": ("First response time", "time_to_admin_reply"),
    "time_to_first_close": ("Time to first close", "time_to_first_close"),
    "time_to_last_close": ("Time to last close", "Time to close", "time_to_last_close"),
    "count_reopens": ("Reopens", "Times reopened", "count_reopens"),
    "first_admin_reply_at": (
        "First replied at",
        "Conversation first replied at",
        "first_admin_reply_at",
    ),
    "first_close_at": ("First closed at", "Conversation first closed at", "first_close_at"),
    "last_close_at": ("Last closed at", "Conversation last closed at", "last_close_at"),
    "contact_id": ("Contact ID", "User ID", "contact_id"),
    "company_name": ("Company name", "Company"),
}
#: Intercom's own priority field (``priority_attribute: priority``) in the export.
PRIORITY_COLUMN = ("Conversation priority", "priority")
#: Needed whatever the settings say.
ALWAYS_REQUIRED = (
    "id",
    "created_at",
    "company_id",
    "state",
    "time_to_admin_reply",
    "time_to_first_close",
    "time_to_last_close",
    "count_reopens",
)
STATES = frozenset({"open", "closed", "snoozed"})
TIMESTAMP_HINT = (
    "expected a time such as 2026-10-14 09:30:00 (UTC), ISO 8601 with an offset "
    "(2026-10-14T09:30:00+02:00) or epoch seconds"
)
_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?")


class ExportError(ValueError):
    """The export file cannot be read as Intercom's conversation export (file, line, column)."""


def attribute_columns(path: str) -> tuple[str, ...]:
    """Header names holding a settings attribute path: ``custom_attributes.Priority`` →
    ``Priority`` (as Intercom's export names conversation attributes); ``priority`` →
    ``Conversation priority``."""
    if path == "priority":
        return PRIORITY_COLUMN
    name = path.partition(".")[2]
    return (name, path)


@dataclass(frozen=True, slots=True)
class ConversationExport:
    """An export file read and checked: its conversations and where they came from."""

    name: str  # the file's basename
    sha256: str
    rows: int
    conversations: tuple[Conversation, ...]

    def describe(self) -> str:
        return (
            f"read from Intercom's conversation export {self.name} ({self.rows} rows, "
            f"sha256 {self.sha256}), not the API"
        )


def _key(header: str) -> str:
    return header.strip().casefold()


def _timestamp(text: str) -> int:
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(TIMESTAMP_HINT) from None
    if moment.tzinfo is None:
        if not _NAIVE.fullmatch(value):
            raise ValueError(TIMESTAMP_HINT)
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _seconds(text: str) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("expected a duration in seconds (e.g. 3600)") from None
    if not value.is_finite() or value < 0:
        raise ValueError("expected a duration in seconds (e.g. 3600), not negative")
    return int(value)  # as the API mode reads a statistic: whole seconds


def _count(text: str) -> int:
    value = text.strip()
    if not value.isdigit():
        raise ValueError("expected a whole number (e.g. 0 or 2)")
    return int(value)


class _Reader:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.rules = Rules.of(settings)

    def fail(self, line: int, column: str | None, message: str) -> ExportError:
        where = f"line {line}" + (f", column '{column}'" if column else "")
        return ExportError(f"Intercom export {self.name}, {where}: {message}")

    def columns(self, header: Sequence[str]) -> tuple[dict[str, int], dict[str, str]]:
        """Column → index and column → the header as written; every problem names line 1."""
        wanted: dict[str, tuple[str, ...]] = dict(COLUMNS)
        wanted["priority"] = attribute_columns(self.settings.priority_attribute)
        if self.settings.escalation_attribute:
            wanted["escalation"] = attribute_columns(self.settings.escalation_attribute)
        required = [*ALWAYS_REQUIRED, "priority"]
        if self.rules.outbound:
            required.append("delivered_as")
        if self.rules.tags or self.rules.p1_p2_tags:
            required.append("tags")
        if self.settings.escalation_attribute:
            required.append("escalation")
        index: dict[str, int] = {}
        written: dict[str, str] = {}
        for position, raw in enumerate(header):
            for column, names in wanted.items():
                if _key(raw) in {_key(n) for n in names}:
                    if column in index:
                        raise self.fail(
                            1,
                            raw.strip(),
                            f"the same column as '{written[column]}' (column "
                            f"{index[column] + 1}); keep one",
                        )
                    index[column], written[column] = position, raw.strip()
        missing = [wanted[c][0] for c in required if c not in index]
        if missing:
            raise self.fail(
                1,
                None,
                f"missing column(s) {', '.join(repr(m) for m in missing)} (the header has: "
                f"{', '.join(h.strip() for h in header) or 'nothing'})",
            )
        return index, written

    def read(self, data: bytes) -> ConversationExport:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise self.fail(
                line, None, f"not UTF-8 text (byte {exc.start}); export or save it as UTF-8"
            ) from None
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise self.fail(1, None, "the file is empty (no header row)")
            index, written = self.columns(header)
            conversations: list[Conversation] = []
            seen: dict[str, int] = {}
            start = reader.line_num + 1
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) != len(header):
                    raise self.fail(
                        line, None, f"{len(cells)} cells where the header has {len(header)}"
                    )
                conversation = self.row(cells, index, written, line)
                if conversation.id in seen:
                    raise self.fail(
                        line,
                        written["id"],
                        f"conversation {conversation.id} again (first on line "
                        f"{seen[conversation.id]}); each conversation is one row",
                    )
                seen[conversation.id] = line
                conversations.append(conversation)
        except csv.Error as exc:
            raise self.fail(reader.line_num, None, f"not valid CSV ({exc})") from None
        return ConversationExport(
            name=self.name,
            sha256=hashlib.sha256(data).hexdigest(),
            rows=len(conversations),
            conversations=tuple(conversations),
        )

    def row(
        self, cells: Sequence[str], index: Mapping[str, int], written: Mapping[str, str], line: int
    ) -> Conversation:
        def cell(column: str) -> str:
            return cells[index[column]].strip() if column in index else ""

        def parsed(column: str, parse: Any) -> Any:
            value = cell(column)
            if not value:
                return None
            try:
                return parse(value)
            except ValueError as exc:
                raise self.fail(line, written[column], f"{value[:40]!r}: {exc}") from None

        conversation_id = cell("id")
        if not conversation_id:
            raise self.fail(line, written["id"], "empty (every row needs its conversation id)")
        created_at = parsed("created_at", _timestamp)
        if created_at is None:
            raise self.fail(line, written["created_at"], "empty (every row needs its creation)")
        state = cell("state").casefold()
        if state not in STATES:
            raise self.fail(
                line, written["state"], f"{cell('state')[:40]!r}: expected open, closed or snoozed"
            )
        statistics = {
            key: parsed(key, _seconds)
            for key in ("time_to_admin_reply", "time_to_first_close", "time_to_last_close")
        }
        statistics["count_reopens"] = parsed("count_reopens", _count) or 0
        for key in ("first_admin_reply_at", "first_close_at", "last_close_at"):
            statistics[key] = parsed(key, _timestamp)
        # The row in the API's shape: one reading of a conversation for both modes.
        raw: dict[str, Any] = {
            "id": conversation_id,
            "created_at": created_at,
            "state": state,
            "source": {"delivered_as": cell("delivered_as")},
            "tags": {"tags": [{"name": t.strip()} for t in cell("tags").split(",") if t.strip()]},
            "statistics": {k: v for k, v in statistics.items() if v is not None},
            "custom_attributes": {},
        }
        company_id = cell("company_id")
        if company_id:
            raw["company"] = {"company_id": company_id}
        for column, path in (
            ("priority", self.settings.priority_attribute),
            ("escalation", self.settings.escalation_attribute),
        ):
            if path and cell(column):
                if path == "priority":
                    raw["priority"] = cell(column)
                else:
                    raw["custom_attributes"][path.partition(".")[2]] = cell(column)
        conversation, _ = parse_conversation(raw, self.rules)
        return conversation


def read_export(data: bytes, name: str, settings: Settings) -> ConversationExport:
    """Read and check an export's bytes (``name``: the file's name, for messages)."""
    return _Reader(name, settings).read(data)


def load_export(path: Path, settings: Settings) -> ConversationExport:
    """Read and check the export file at ``path``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(
            f"Intercom export {path}: cannot be read ({exc.strerror or exc})"
        ) from None
    return read_export(data, path.name, settings)


class IntercomExportExtractor:
    """Intercom's metrics for every mapped company from an export file: no request is made."""

    name = SOURCE

    def __init__(
        self,
        export: ConversationExport,
        settings: Settings,
        *,
        as_of: datetime,
        now: datetime | None = None,
    ) -> None:
        if as_of.tzinfo is None or (now is not None and now.tzinfo is None):
            raise ValueError("as_of and now must be timezone-aware (UTC)")
        self.export = export
        self.settings = settings
        self.as_of = as_of.astimezone(UTC)
        self.now = None if now is None else now.astimezone(UTC)

    @property
    def read_later(self) -> bool:
        """Whether the period is read after its end: replies and closes since then are cut."""
        return self.now is not None and self.now > self.as_of

    @property
    def provides(self) -> frozenset[str]:
        return frozenset(METRICS)

    @property
    def requests_made(self) -> int:
        return 0

    @property
    def window(self) -> tuple[int, int]:
        """The look-back window ``[start, end)`` in epoch seconds (as the API mode's)."""
        end = self.as_of
        start = end - timedelta(days=self.settings.lookback_days)
        return int(start.timestamp()), int(end.timestamp())

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        start, end = self.window
        by_company: dict[str, list[Conversation]] = defaultdict(list)
        measured = outbound = unattributed = 0
        for conversation in self.export.conversations:
            if not start <= conversation.created_at < end:
                continue
            if conversation.outbound:
                outbound += 1
                continue
            measured += 1
            if self.read_later:
                conversation = seen_at(conversation, end)
            if conversation.company_id is None:
                unattributed += 1
            else:
                by_company[conversation.company_id].append(conversation)
        notes = [self.export.describe()]
        lo, hi = (datetime.fromtimestamp(t, UTC) for t in (start, end))
        notes.append(
            f"{measured + outbound} of its {self.export.rows} conversations created in the "
            f"window [{lo:%Y-%m-%dT%H:%MZ}, {hi:%Y-%m-%dT%H:%MZ})"
        )
        if outbound:
            notes.append(
                f"{outbound} outbound conversations (source.delivered_as in "
                f"{', '.join(self.settings.exclude_delivered_as)}) not measured"
            )
        if self.read_later:
            notes.append("replies and closes from as_of on not counted (read after the period)")
        if unattributed:
            notes.append(
                f"{unattributed} conversations without a Company ID not attributed to any "
                "company (the export names no contact's companies)"
            )
        metrics: dict[str, dict[str, MetricValue]] = {}
        for account in accounts:
            if account.intercom_company_id is None:
                metrics[account.account_id] = dict.fromkeys(METRICS)
            else:
                metrics[account.account_id] = company_metrics(
                    by_company.get(account.intercom_company_id, [])
                )
        log.info("intercom: %d conversations in the window, from the export", measured)
        return SourceResult(
            source=SOURCE,
            metrics=metrics,
            requests=0,
            notes=tuple(notes),
            window=(lo, self.as_of),
        )
