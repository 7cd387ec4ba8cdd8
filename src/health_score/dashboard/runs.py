"""Find and read run folders (DESIGN §5), on local disk or under an ``s3://`` prefix.

A folder with ``manifest.json`` is a complete run (the pipeline writes the manifest last); one
without is partial: still running, or stopped half-way. Every problem with a folder becomes a
``RunError`` whose message names the run and the file, so the dashboard can say what is wrong
instead of showing a stack trace.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from health_score.loaders.artifacts import MANIFEST, StoreError
from health_score.loaders.s3_store import S3RunStore

RAW = "raw.csv"
SCORES = "scores.csv"
METRICS = "metrics.npz"  # the metric-level explanation (health_score.loaders.explanation)
LEGACY_METRICS = "metrics.csv"  # what runs written before metrics.npz hold instead
CHANGES = "changes.csv"  # each account's change since the previous ok run, in parts
CONFIG_FILES = ("config/weights.yaml", "config/thresholds.yaml")


class RunError(Exception):
    """A run folder that cannot be shown; the message says which run and file, and why."""


class RunReader(Protocol):
    """Where run folders live."""

    location: str

    def run_ids(self) -> list[str]: ...

    def read(self, run_id: str, name: str) -> bytes | None:
        """The file's bytes, or None when the run has no such file."""
        ...

    def local_folder(self, run_id: str, names: tuple[str, ...]) -> Path:
        """A local folder holding ``names`` of the run (the run folder itself when local)."""
        ...


class LocalRuns:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.location = str(base)

    def run_ids(self) -> list[str]:
        if not self.base.is_dir():
            return []
        return sorted(
            p.name
            for p in self.base.iterdir()
            if p.is_dir() and not p.is_symlink() and p.name[0] != "."
        )

    def inside(self, run_id: str, name: str = "") -> Path:
        """``base/run_id/name``, refused (RunError) when it would leave the runs folder: a
        ``..``, an absolute name, or a symlink pointing elsewhere are never followed."""
        parts = [run_id, *name.split("/")] if name else [run_id]
        if any(part in ("", ".", "..") or "\\" in part for part in parts) or name.startswith("/"):
            raise RunError(f"run {run_id[:80]!r}: {name[:80]!r} is not a file of a run folder")
        path = self.base.joinpath(*parts)
        base = self.base.resolve()
        if not path.resolve().is_relative_to(base) or (self.base / run_id).is_symlink():
            raise RunError(f"run {run_id[:80]}: {name or 'the folder'} points outside {self.base}")
        return path

    def read(self, run_id: str, name: str) -> bytes | None:
        path = self.inside(run_id, name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunError(f"run {run_id}: cannot read {name}: {exc}") from None

    def local_folder(self, run_id: str, names: tuple[str, ...]) -> Path:
        for name in names:
            self.inside(run_id, name)
        return self.inside(run_id)


class S3Runs:
    """Run folders under ``s3://bucket/prefix/``, read with boto3 (credentials from the usual
    AWS chain; ``AWS_ENDPOINT_URL`` points it at an S3-compatible store)."""

    def __init__(self, url: str, *, client: Any = None) -> None:
        store = S3RunStore.from_url(url, client=client)  # validates the bucket and prefix
        self.bucket = store.bucket
        self.prefix = store.prefix
        self.location = store.location
        self._store = store
        self._copies: dict[str, Path] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        return self._store.client

    def run_ids(self) -> list[str]:
        return self._store.run_ids()

    def read(self, run_id: str, name: str) -> bytes | None:
        try:
            return self._store.read(run_id, name)
        except StoreError as exc:
            raise RunError(f"run {run_id}: {exc}") from None

    def local_folder(self, run_id: str, names: tuple[str, ...]) -> Path:
        """Download ``names`` once into a temporary folder (runs are immutable)."""
        with self._lock:
            folder = self._copies.get(run_id)
            if folder is None:
                folder = Path(tempfile.mkdtemp(prefix="hsm-dashboard-")) / run_id
                atexit.register(shutil.rmtree, folder.parent, True)
                for name in names:
                    data = self.read(run_id, name)
                    if data is not None:
                        target = folder / name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
                self._copies[run_id] = folder
            return folder


def open_runs(location: str) -> RunReader:
    """A local folder, or ``s3://bucket/prefix``."""
    if location.startswith("s3://"):
        return S3Runs(location)
    return LocalRuns(Path(location))


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run folder as listed: complete (with its manifest) or not (with the reason)."""

    run_id: str
    manifest: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why the folder cannot be shown; None for a complete run

    @property
    def complete(self) -> bool:
        return self.problem is None

    @property
    def ok(self) -> bool:
        return self.complete and self.status == "ok"

    @property
    def usable(self) -> bool:
        """Complete and not failed: its scores can be shown (a degraded run with a warning)."""
        return self.complete and self.status != "failed"

    @property
    def period(self) -> str:
        return str(self.manifest.get("period", ""))

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", ""))

    @property
    def started_at(self) -> str:
        return str(self.manifest.get("started_at", ""))

    @property
    def tiers(self) -> dict[str, int]:
        raw = self.manifest.get("tiers")
        if not isinstance(raw, Mapping):
            return {}
        return {str(k): int(v) for k, v in raw.items() if isinstance(v, int)}

    @property
    def label(self) -> str:
        return f"{self.period} · {self.status} · {self.run_id}"

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.period, self.started_at, self.run_id)


def parse_manifest(run_id: str, data: bytes | None) -> RunInfo:
    """Check a manifest enough to list the run; a bad one becomes the run's ``problem``."""
    if data is None:
        return RunInfo(
            run_id,
            problem=f"run {run_id} is incomplete: it has no {MANIFEST} (the run is still "
            "going, or stopped before finishing); it is skipped",
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return RunInfo(run_id, problem=f"run {run_id}: {MANIFEST} is not valid JSON ({exc})")
    if not isinstance(document, dict):
        return RunInfo(run_id, problem=f"run {run_id}: {MANIFEST} is not a JSON object")
    missing = [key for key in ("period", "status") if not isinstance(document.get(key), str)]
    if missing:
        return RunInfo(run_id, problem=f"run {run_id}: {MANIFEST} lacks {', '.join(missing)}")
    return RunInfo(run_id, document)


def list_runs(reader: RunReader) -> list[RunInfo]:
    """Every run folder, complete ones ordered oldest → newest, then the unusable ones."""
    infos = [parse_manifest(run_id, reader.read(run_id, MANIFEST)) for run_id in reader.run_ids()]
    complete = sorted((i for i in infos if i.complete), key=lambda i: i.sort_key)
    return [*complete, *(i for i in infos if not i.complete)]


def _newest_ok_else_usable(runs: list[RunInfo]) -> RunInfo | None:
    ok = [r for r in runs if r.ok]
    usable = [r for r in runs if r.usable]
    return ok[-1] if ok else (usable[-1] if usable else None)


def latest(runs: list[RunInfo]) -> RunInfo | None:
    """The run the dashboard opens on: the newest ``ok`` run (latest period, then latest start);
    only when no run is ok, the newest degraded one. Failed runs are never the default."""
    return _newest_ok_else_usable(runs)


def previous(runs: list[RunInfo], current: RunInfo) -> RunInfo | None:
    """The run of an earlier period than ``current`` that "change since the previous run" compares
    with: the newest ``ok`` one (else the newest degraded one). Re-runs of the same period do not
    hide the month's change, and a failed run is never a baseline."""
    return _newest_ok_else_usable([r for r in runs if r.period < current.period])


def latest_ok_per_period(runs: list[RunInfo]) -> dict[str, RunInfo]:
    """Period → its newest ``ok`` run, oldest period first (what Trends and History plot)."""
    per_period: dict[str, RunInfo] = {}
    for run in runs:  # oldest → newest, so the latest ok run of each period wins
        if run.ok:
            per_period[run.period] = run
    return dict(sorted(per_period.items()))


def read_metrics(reader: RunReader, run_id: str) -> tuple[str, bytes]:
    """The run's explanation file: (name, bytes), ``metrics.npz`` or an older run's CSV."""
    for name in (METRICS, LEGACY_METRICS):
        data = reader.read(run_id, name)
        if data is not None:
            return name, data
    raise RunError(f"run {run_id} is missing {METRICS}; the folder is damaged")


def require(reader: RunReader, run_id: str, name: str) -> bytes:
    data = reader.read(run_id, name)
    if data is None:
        raise RunError(f"run {run_id} is missing {name}; the folder is damaged")
    return data
