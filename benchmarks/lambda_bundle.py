"""Benchmark: the Lambda bundle's size, cold import time and a 10,000-account run's peak memory.

1. Builds the deployment zip with the real packaging code (``make package``) and prints its size
   unzipped and zipped.
2. Cold import of ``health_score.pipeline`` (and of ``health_score.aws_lambda``, which the first
   invocation imports):
   a fresh ``python -X importtime -I -S`` process per sample, importing from the extracted
   bundle only (as Lambda does from /var/task), with the Lambda's Python when it is installed;
   median of several samples, from the ``cumulative`` column.
3. Peak memory of a 10,000-account dry run through the handler: this process serves the sandbox
   (10,000 accounts, all four stand-ins); a child process runs ``health_score.aws_lambda.invoke``
  with
   the credentials in a Secrets Manager secret and the artifacts going to S3 (both moto, in the
   child), so the child's peak (VmHWM) is what the function would need, plus moto's own
   footprint, which is printed as the child's baseline before the run.

Targets: ≤ 60 MB unzipped, cold import ≤ 1.0 s, peak ≤ 512 MB.

    python benchmarks/lambda_bundle.py [--accounts 10000] [--samples 7] [--zip build/lambda.zip]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from health_score.lambda_package import LAMBDA_PYTHON, build, target_interpreter  # noqa: E402

MB = 1000 * 1000
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|\s?(\S.*)$")

CHILD = """
import json, os, sys
def hwm_kb():
    # VmHWM: this process's own peak resident set (ru_maxrss would carry the parent's peak
    # over exec, and the parent holds the whole sandbox).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
args = json.loads(sys.argv[1])
os.environ.update({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "bench",
                   "AWS_SECRET_ACCESS_KEY": "bench"})
sys.path.insert(0, args["repo"])
import boto3
from moto import mock_aws
from datetime import datetime
from pathlib import Path
with mock_aws():
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="bench", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = sm.create_secret(Name="bench", SecretString=json.dumps(args["env"]))["ARN"]
    from health_score.aws_lambda import invoke
    from health_score.pipeline import RunOptions
    baseline = hwm_kb()
    class Context:
        aws_request_id = "bench"
        function_name = "bench"
    import io, contextlib
    with contextlib.redirect_stdout(io.StringIO()):
        summary = invoke(
            {"dry_run": True, "scoring_period": "2026-11"},
            Context(),
            {"ARTIFACT_BUCKET": "bench", "ARTIFACT_PREFIX": "runs", "SECRETS_ID": arn,
             "AWS_DEFAULT_REGION": "eu-west-1", "LOG_LEVEL": "WARNING"},
            base=RunOptions(config_dir=Path(args["config"]), mapping_path=Path(args["mapping"]),
                            as_of=datetime.fromisoformat(args["as_of"])),
        )
    objects = s3.list_objects_v2(Bucket="bench").get("KeyCount", 0)
peak = hwm_kb()
print(json.dumps({"baseline_kb": baseline, "peak_kb": peak, "objects": objects,
                  "status": summary["status"], "accounts": summary["accounts_total"],
                  "sources": {k: v["status"] for k, v in summary["sources"].items()}}))
"""


def bundle_size(zip_path: Path | None, work: Path) -> tuple[Path, int, int, str]:
    if zip_path is None:
        bundle = build(work / "lambda.zip", work=work / "lambda")
        return bundle.path, bundle.unzipped_bytes, bundle.zipped_bytes, bundle.python_version
    with zipfile.ZipFile(zip_path) as archive:
        unzipped = sum(info.file_size for info in archive.infolist())
    return zip_path, unzipped, zip_path.stat().st_size, LAMBDA_PYTHON


def import_times(root: Path, interpreter: str, modules: str, samples: int) -> list[float]:
    """Seconds (importtime's cumulative) to import ``modules`` in fresh processes."""
    wanted = set(modules.split(","))
    code = f"import sys; sys.path.insert(0, {str(root)!r}); import {modules}"
    times = []
    for _ in range(samples):
        result = subprocess.run(
            [interpreter, "-X", "importtime", "-I", "-S", "-c", code],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        total = 0
        for line in result.stderr.splitlines():
            match = IMPORT_LINE.match(line)
            if match and match.group(3) in wanted:  # top level: no leading spaces
                total += int(match.group(2))
        times.append(total / 1e6)
    return times


def peak_memory(accounts: int) -> dict[str, object]:
    from health_score_sandbox.sandbox import Sandbox

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        config.mkdir()
        for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
            shutil.copy(REPO / "config" / name, config / name)
        started = time.perf_counter()
        with Sandbox(accounts, as_of=AS_OF.date()) as sandbox:
            mapping = sandbox.write_mapping(config / "account_mapping.csv")
            generated = time.perf_counter() - started
            args = {
                "repo": str(REPO),
                "env": sandbox.env(),
                "config": str(config),
                "mapping": str(mapping),
                "as_of": AS_OF.isoformat(),
            }
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", CHILD, json.dumps(args)],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(result.stderr[-4000:])
        report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
        report["wall_seconds"] = wall
        report["sandbox_seconds"] = generated
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--zip", type=Path, default=None, help="measure this zip, do not build")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        zip_path, unzipped, zipped, version = bundle_size(args.zip, work)
        print(
            f"bundle: {unzipped / MB:.1f} MB unzipped (target ≤ 60), {zipped / MB:.1f} MB zipped "
            f"[built in {time.perf_counter() - started:.1f}s, Python {version}]"
        )
        root = work / "task"
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(root)
        interpreter = target_interpreter(version) or sys.executable
        main_times = import_times(root, interpreter, "health_score.pipeline", args.samples)
        both_times = import_times(
            root, interpreter, "health_score.pipeline,health_score.aws_lambda", args.samples
        )
        print(
            f"cold import of health_score.pipeline: median {statistics.median(main_times):.3f}s "
            f"(min {min(main_times):.3f}, max {max(main_times):.3f}; {args.samples} fresh "
            f"processes, {Path(interpreter).name}) (target ≤ 1.0)"
        )
        print(
            "cold import of health_score.pipeline + health_score.aws_lambda (first invocation): "
            f"median "
            f"{statistics.median(both_times):.3f}s"
        )

    report = peak_memory(args.accounts)
    peak = int(str(report["peak_kb"])) / 1024
    baseline = int(str(report["baseline_kb"])) / 1024
    print(
        f"{args.accounts:,}-account dry run through the handler: status {report['status']}, "
        f"{report['accounts']} accounts, sources {report['sources']}, "
        f"{report['objects']} S3 objects, {float(str(report['wall_seconds'])):.1f}s wall "
        f"(sandbox generated in {float(str(report['sandbox_seconds'])):.1f}s)"
    )
    print(
        f"peak memory of the run's process: {peak:.0f} MiB (target ≤ 512), of which "
        f"{baseline:.0f} MiB before the run (Python, boto3, moto standing in for AWS)"
    )


if __name__ == "__main__":
    main()
