"""S3 run artifacts (moto): layout, immutability, manifest last, and a run written end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from health_score.loaders.artifacts import MANIFEST, ArtifactExistsError
from health_score.loaders.s3_store import S3RunStore, S3StoreError
from health_score.loaders.stores import open_store
from health_score.pipeline import RunOptions, run

REPO = Path(__file__).resolve().parents[2]
BUCKET = "hsm-artifacts-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield client


def keys(client: Any, prefix: str = "") -> list[str]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def body(client: Any, key: str) -> bytes:
    data: bytes = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


class NoConditionalWrites:
    """An S3-compatible client that, like some stores, does not implement If-None-Match."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.heads = 0

    def put_object(self, **request: Any) -> Any:
        if "IfNoneMatch" in request:
            raise ClientError(
                {"Error": {"Code": "NotImplemented", "Message": "not implemented"}}, "PutObject"
            )
        return self.client.put_object(**request)

    def head_object(self, **request: Any) -> Any:
        self.heads += 1
        return self.client.head_object(**request)

    def list_objects_v2(self, **request: Any) -> Any:
        return self.client.list_objects_v2(**request)


def test_a_run_writes_each_file_under_prefix_and_run_id(s3: Any) -> None:
    store = S3RunStore.from_url(f"s3://{BUCKET}/runs/monthly/")
    writer = store.create_run("2026-11_20261101T060000Z_abc123")
    writer.write_bytes("scores.csv", b"account_id\nA1\n")
    writer.write_bytes("config/weights.yaml", b"health_score: {}\n")
    writer.write_bytes(MANIFEST, b'{"status": "ok"}\n')

    prefix = "runs/monthly/2026-11_20261101T060000Z_abc123/"
    assert writer.location == f"s3://{BUCKET}/{prefix}"
    assert keys(s3) == [prefix + "config/weights.yaml", prefix + MANIFEST, prefix + "scores.csv"]
    assert body(s3, prefix + "scores.csv") == b"account_id\nA1\n"
    head = s3.head_object(Bucket=BUCKET, Key=prefix + "scores.csv")
    assert head["ContentType"].startswith("text/csv")


def test_a_bucket_without_prefix_puts_run_folders_at_the_top(s3: Any) -> None:
    writer = S3RunStore.from_url(f"s3://{BUCKET}").create_run("run-1")
    writer.write_bytes(MANIFEST, b"{}")
    assert keys(s3) == ["run-1/manifest.json"]


def test_a_run_folder_that_already_has_objects_is_refused(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="runs/run-1/raw.csv", Body=b"earlier")
    store = S3RunStore.from_url(f"s3://{BUCKET}/runs")
    with pytest.raises(ArtifactExistsError, match="already exists"):
        store.create_run("run-1")
    assert body(s3, "runs/run-1/raw.csv") == b"earlier"


def test_a_file_is_never_overwritten_even_by_a_concurrent_writer(s3: Any) -> None:
    store = S3RunStore.from_url(f"s3://{BUCKET}/runs")
    first = store.create_run("run-2")
    second = store.create_run("run-2")  # both saw an empty prefix: a race
    first.write_bytes("scores.csv", b"first")
    with pytest.raises(ArtifactExistsError, match="immutable"):
        second.write_bytes("scores.csv", b"second")
    assert body(s3, "runs/run-2/scores.csv") == b"first"


def test_a_store_without_conditional_writes_checks_before_putting(s3: Any) -> None:
    client = NoConditionalWrites(s3)
    store = S3RunStore(BUCKET, "runs", client=client)
    first = store.create_run("run-3")
    second = store.create_run("run-3")
    first.write_bytes("scores.csv", b"first")
    with pytest.raises(ArtifactExistsError):
        second.write_bytes("scores.csv", b"second")
    assert client.heads == 2
    assert body(s3, "runs/run-3/scores.csv") == b"first"


def test_the_manifest_seals_the_run(s3: Any) -> None:
    writer = S3RunStore.from_url(f"s3://{BUCKET}/runs").create_run("run-4")
    writer.write_bytes(MANIFEST, b"{}")
    with pytest.raises(ArtifactExistsError, match="complete"):
        writer.write_bytes("late.csv", b"x")
    assert keys(s3, "runs/run-4/") == ["runs/run-4/manifest.json"]


@pytest.mark.parametrize(
    "name", ["../escape.csv", "/abs.csv", "a//b.csv", ".hidden", "config/../x", ""]
)
def test_artifact_names_that_could_escape_the_run_folder_are_refused(s3: Any, name: str) -> None:
    writer = S3RunStore.from_url(f"s3://{BUCKET}/runs").create_run("run-5")
    with pytest.raises(S3StoreError):
        writer.write_bytes(name, b"x")
    assert keys(s3) == []


@pytest.mark.parametrize(
    "url", ["s3://", "s3://Bad_Bucket/runs", "s3://ok-bucket/../up", "https://ok-bucket/runs"]
)
def test_malformed_locations_are_refused_with_the_expected_form(url: str) -> None:
    with pytest.raises(S3StoreError):
        S3RunStore.from_url(url)


def test_a_whole_run_lands_in_s3_with_the_manifest_written_last(s3: Any, tmp_path: Path) -> None:
    store = open_store(f"s3://{BUCKET}/runs")
    assert isinstance(store, S3RunStore)
    summary = run(
        RunOptions(
            config_dir=REPO / "config",
            from_raw=REPO / "examples" / "raw_metrics.csv",
            dry_run=True,
            period="2026-11",
            output=tmp_path / "scores.csv",
            runs_dir=f"s3://{BUCKET}/runs",
        )
    )
    assert summary.exit_code == 0, summary.messages
    prefix = f"runs/{summary.run_id}/"
    assert summary.run_location == f"s3://{BUCKET}/{prefix}"
    names = [key.removeprefix(prefix) for key in keys(s3, prefix)]
    assert {"raw.csv", "scores.csv", "metrics.npz", MANIFEST} <= set(names)
    assert "config/weights.yaml" in names
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=prefix).get("Versions", [])
    assert len(versions) == len(names)  # each object written once
    stamps = {v["Key"].removeprefix(prefix): v["LastModified"] for v in versions}
    assert all(stamps[MANIFEST] >= stamp for stamp in stamps.values())
    assert body(s3, prefix + "scores.csv") == (tmp_path / "scores.csv").read_bytes()


def test_a_bucket_gone_at_write_time_is_a_store_error_naming_bucket_and_key(s3: Any) -> None:
    writer = S3RunStore(BUCKET, "runs", client=s3).create_run("r1")
    s3.delete_bucket(Bucket=BUCKET)  # empty still, so it can go between listing and writing
    with pytest.raises(S3StoreError) as caught:
        writer.write_bytes("scores.csv", b"a\n")
    assert str(caught.value) == (
        f"S3 write of s3://{BUCKET}/runs/r1/scores.csv failed: NoSuchBucket "
        "(The specified bucket does not exist)"
    )
    assert writer.written == []


class Denied:
    """A client whose role may not touch the bucket (what S3 answers: AccessDenied)."""

    def list_objects_v2(self, **request: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "List")


def test_access_denied_ends_the_run_as_failed_with_a_message_naming_the_bucket(
    tmp_path: Path,
) -> None:
    summary = run(
        RunOptions(
            config_dir=REPO / "config",
            from_raw=REPO / "examples" / "raw_metrics.csv",
            output=tmp_path / "s.csv",
        ),
        store=S3RunStore(BUCKET, "runs", client=Denied()),
    )
    assert (summary.status, summary.exit_code, summary.run_location) == ("failed", 1, None)
    assert summary.run_id is not None
    (message,) = summary.messages
    assert message == (
        f"the run's files could not be written: S3 listing of s3://{BUCKET}/runs/"
        f"{summary.run_id}/ failed: AccessDenied (Access Denied)"
    )


def test_changes_compare_with_the_previous_run_in_the_same_bucket(s3: Any, tmp_path: Path) -> None:
    summaries = [
        run(
            RunOptions(
                config_dir=REPO / "config",
                from_raw=REPO / "examples" / "raw_metrics.csv",
                dry_run=True,
                period=period,
                output=tmp_path / "scores.csv",
                runs_dir=f"s3://{BUCKET}/runs",
            )
        )
        for period in ("2026-10", "2026-11")
    ]
    first, second = summaries
    manifest = json.loads(body(s3, f"runs/{second.run_id}/{MANIFEST}"))
    assert manifest["compared_with"] == {"run_id": first.run_id, "period": "2026-10"}
    changes = body(s3, f"runs/{second.run_id}/changes.csv").decode().splitlines()
    # The same raw file: every account is unchanged.
    assert len(changes) == 1 + 25
    assert all(line.split(",")[7] == "unchanged" for line in changes[1:])
