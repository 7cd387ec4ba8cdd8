"""Run artifacts: one immutable folder per run, locally or under an S3 prefix.

Layout (DESIGN §5): ``<runs-dir>/<run_id>/`` holding ``raw.csv``, ``scores.csv``, ``metrics.npz``
(metric-level detail, column-wise), ``config/`` (the weights and thresholds the run used) and,
written last, ``manifest.json``. A run folder is never overwritten; each file is written
atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

from health_score.redact import redact

MANIFEST = "manifest.json"
#: Run files read as text, and so redacted on their way out (metrics.npz is numbers).
TEXT_SUFFIXES = (".json", ".csv", ".log", ".txt", ".yaml", ".yml")


class ArtifactExistsError(Exception):
    """A run folder or file already exists: runs are immutable."""


class RunWriter(Protocol):
    """Writes the files of one run."""

    location: str

    def write_bytes(self, name: str, data: bytes) -> None: ...


class RunStore(Protocol):
    """Where run folders live."""

    location: str

    def create_run(self, run_id: str) -> RunWriter: ...


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def json_bytes(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")


class LocalRunWriter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self._atomic(name, "wb") as handle:
            handle.write(data)

    @contextmanager
    def open_text(self, name: str) -> Iterator[TextIO]:
        """Stream a large text file; it appears whole when the block ends without error."""
        with self._atomic(name, "w") as handle:
            yield handle

    @contextmanager
    def open_binary(self, name: str) -> Iterator[BinaryIO]:
        """Stream a large binary file; it appears whole when the block ends without error."""
        with self._atomic(name, "wb") as handle:
            yield handle

    @contextmanager
    def _atomic(self, name: str, mode: str) -> Iterator[Any]:
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            encoding = None if "b" in mode else "utf-8"
            with os.fdopen(fd, mode, encoding=encoding, newline="" if encoding else None) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            # os.link fails if the target exists: a file of a run is written once, never replaced.
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise ArtifactExistsError(
                    f"{target} already exists; run files are immutable"
                ) from None
        finally:
            tmp.unlink(missing_ok=True)


@contextmanager
def open_text(writer: RunWriter, name: str) -> Iterator[TextIO]:
    """A text handle for one run file: streamed where the store can, else buffered then put."""
    opener = getattr(writer, "open_text", None)
    if opener is not None:
        with opener(name) as handle:
            yield handle
        return
    buffer = io.StringIO()
    yield buffer
    writer.write_bytes(name, buffer.getvalue().encode("utf-8"))


@contextmanager
def open_binary(writer: RunWriter, name: str) -> Iterator[BinaryIO]:
    """A binary handle for one run file: streamed where the store can, else buffered then put."""
    opener = getattr(writer, "open_binary", None)
    if opener is not None:
        with opener(name) as handle:
            yield handle
        return
    buffer = io.BytesIO()
    yield buffer
    writer.write_bytes(name, buffer.getvalue())


class RedactingRunWriter:
    """Any store's writer, with every text file passed through :func:`~health_score.redact.redact`.

    This is where secrets are kept out of the manifest, the CSVs and any log of a run, locally
    and on S3 alike: whatever an error message or a vendor field carried, a token-like value or
    a registered credential is ``[redacted]`` in the file. Bytes that hold no secret are written
    unchanged (undecodable bytes round-trip).
    """

    def __init__(self, inner: RunWriter) -> None:
        self.inner = inner
        self.location = inner.location

    def write_bytes(self, name: str, data: bytes) -> None:
        if name.endswith(TEXT_SUFFIXES):
            data = redact(data.decode("utf-8", "surrogateescape")).encode(
                "utf-8", "surrogateescape"
            )
        self.inner.write_bytes(name, data)

    @contextmanager
    def open_binary(self, name: str) -> Iterator[BinaryIO]:
        """A binary file streams through as is; a text one is buffered, redacted, then put."""
        if name.endswith(TEXT_SUFFIXES):
            buffer = io.BytesIO()
            yield buffer
            self.write_bytes(name, buffer.getvalue())
            return
        with open_binary(self.inner, name) as handle:
            yield handle


class StoreError(Exception):
    """A runs folder (local or S3) that cannot hold runs; the message says why."""


class LocalRunStore:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.location = str(base)

    def check(self) -> None:
        """The folder is, or can be created as, a folder this process may write in."""
        existing = self.base
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise StoreError(f"--runs-dir {self.base}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StoreError(f"--runs-dir {self.base}: {existing} is not writable")

    def run_ids(self) -> list[str]:
        """The run folders (never a symlink or a hidden folder), oldest name first."""
        if not self.base.is_dir():
            return []
        return sorted(
            p.name
            for p in self.base.iterdir()
            if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
        )

    def read(self, run_id: str, name: str) -> bytes | None:
        """One file of a run, or None when the run has no such file."""
        try:
            return Path(self.base, run_id, name).read_bytes()
        except FileNotFoundError:
            return None

    def create_run(self, run_id: str) -> LocalRunWriter:
        self.base.mkdir(parents=True, exist_ok=True)
        folder = self.base / run_id
        try:
            folder.mkdir()
        except FileExistsError:
            raise ArtifactExistsError(f"run folder {folder} already exists") from None
        return LocalRunWriter(folder)
