"""Run artifacts under an S3 prefix: ``s3://bucket/prefix/<run_id>/<file>``.

The same guarantees as the local store (DESIGN §5):

- **never overwritten**: a run is refused when its prefix already holds an object, and every
  file is put with ``If-None-Match: *`` (S3 conditional write) so a second writer of the same
  key gets ``412 Precondition Failed`` instead of replacing it. Stores that do not implement
  conditional writes (``501 NotImplemented``) fall back to a ``HEAD`` check before the put;
- **a reader never sees half a file**: a single S3 ``PutObject`` is atomic (the object appears
  whole or not at all) and carries an MD5 that S3 verifies before storing;
- ``manifest.json`` is written last, so a folder with a manifest is complete. Once it is
  written the writer is sealed and refuses further files.

Any S3 or botocore failure (no such bucket, access denied, no credentials, no connection) is an
:class:`S3StoreError` naming the ``s3://bucket/key`` and the S3 error code, never a raw botocore
exception: the pipeline ends the run as failed with that message.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from health_score.loaders.artifacts import MANIFEST, ArtifactExistsError, StoreError

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")

_CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
}


class S3StoreError(StoreError):
    """A bad ``s3://`` location or a file name that cannot be a key of a run."""


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code is not None:
            return str(code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status is not None:
            return str(status)
    return ""


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    error: type[Exception] = ClientError
    return error


def _boto_errors() -> tuple[type[Exception], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no botocore, no botocore errors
        return ()
    return (ClientError, BotoCoreError)


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    code = _error_code(exc)
    message = response.get("Error", {}).get("Message") if isinstance(response, dict) else None
    if code:
        return f"{code}" + (f" ({message})" if message else "")
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def _s3_failures(action: str, url: str) -> Iterator[None]:
    """Turn a botocore error inside the block into an S3StoreError naming ``url``."""
    try:
        yield
    except _boto_errors() as exc:
        raise S3StoreError(f"S3 {action} {url} failed: {_describe(exc)}") from None


def _check_relative(name: str) -> str:
    parts = name.split("/")
    if not name or any(not _SEGMENT.fullmatch(part) for part in parts):
        raise S3StoreError(
            f"artifact name {name!r} must be a relative path of plain segments "
            "(letters, digits, '.', '_', '-'; no leading '.', no '..')"
        )
    return name


def _content_type(name: str) -> str:
    for suffix, content_type in _CONTENT_TYPES.items():
        if name.endswith(suffix):
            return content_type
    return "application/octet-stream"


class S3RunWriter:
    """Writes the files of one run, each object once."""

    def __init__(self, client: Any, bucket: str, run_prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.run_prefix = run_prefix  # ends with "/"
        self.location = f"s3://{bucket}/{run_prefix}"
        self.written: list[str] = []
        self._sealed = False
        self._conditional_writes = True

    def write_bytes(self, name: str, data: bytes) -> None:
        if self._sealed:
            raise ArtifactExistsError(
                f"{self.location}{MANIFEST} is written; the run is complete and immutable"
            )
        key = self.run_prefix + _check_relative(name)
        with _s3_failures("write of", f"s3://{self.bucket}/{key}"):
            self._put(name, key, data)
        self.written.append(name)
        if name == MANIFEST:
            self._sealed = True

    def _put(self, name: str, key: str, data: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentMD5": md5,
            "ContentType": _content_type(name),
        }
        if self._conditional_writes:
            try:
                self.client.put_object(**request, IfNoneMatch="*")
            except _client_error() as exc:
                code = _error_code(exc)
                if code in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}:
                    raise ArtifactExistsError(
                        f"s3://{self.bucket}/{key} already exists; run files are immutable"
                    ) from None
                if code not in {"NotImplemented", "501"}:
                    raise
                # This store does not support conditional writes: check, then put.
                self._conditional_writes = False
        if not self._conditional_writes:
            if self._exists(key):
                raise ArtifactExistsError(
                    f"s3://{self.bucket}/{key} already exists; run files are immutable"
                )
            self.client.put_object(**request)

    def _exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except _client_error() as exc:
            if _error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True


class S3RunStore:
    """Run folders under ``s3://bucket/prefix``; each run is a fresh ``prefix/run_id/``."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise S3StoreError(f"{bucket!r} is not a valid S3 bucket name")
        prefix = prefix.strip("/")
        if prefix:
            for part in prefix.split("/"):
                if not _SEGMENT.fullmatch(part):
                    raise S3StoreError(
                        f"S3 prefix {prefix!r} must be plain segments (letters, digits, '.', "
                        "'_', '-') separated by '/'"
                    )
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.location = f"s3://{bucket}/{self.prefix}"
        self._client = client

    @classmethod
    def from_url(cls, url: str, *, client: Any = None) -> S3RunStore:
        """``s3://bucket`` or ``s3://bucket/some/prefix`` (a trailing slash is ignored)."""
        if not url.startswith("s3://"):
            raise S3StoreError(f"expected s3://bucket/prefix, got {url!r}")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return cls(bucket, prefix, client=client)

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # only runs that write to S3 pay for importing boto3

            with _s3_failures("client for", self.location):
                self._client = boto3.client("s3")
        return self._client

    def run_ids(self) -> list[str]:
        """The run folders under the prefix, oldest name first."""
        names: list[str] = []
        with _s3_failures("listing of", self.location):
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")
            for page in pages:
                for entry in page.get("CommonPrefixes", []):
                    name = str(entry["Prefix"])[len(self.prefix) :].strip("/")
                    if name:
                        names.append(name)
        return sorted(names)

    def read(self, run_id: str, name: str) -> bytes | None:
        """One file of a run, or None when the run has no such file."""
        key = f"{self.prefix}{run_id}/{name}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body: bytes = response["Body"].read()
        except _boto_errors() as exc:
            if _error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise S3StoreError(
                f"S3 read of s3://{self.bucket}/{key} failed: {_describe(exc)}"
            ) from None
        return body

    def create_run(self, run_id: str) -> S3RunWriter:
        if not _SEGMENT.fullmatch(run_id):
            raise S3StoreError(f"run id {run_id!r} cannot be an S3 folder name")
        run_prefix = f"{self.prefix}{run_id}/"
        with _s3_failures("listing of", f"s3://{self.bucket}/{run_prefix}"):
            listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=run_prefix, MaxKeys=1)
        if listing.get("KeyCount", 0) or listing.get("Contents"):
            raise ArtifactExistsError(
                f"run folder s3://{self.bucket}/{run_prefix} already exists; runs are immutable"
            )
        return S3RunWriter(self.client, self.bucket, run_prefix)
