"""Build the Lambda deployment zip: runtime dependencies, ``src/`` and ``config/``, nothing else.

``python -m health_score.lambda_package`` (``make package``) writes ``build/lambda.zip``:

1. the runtime requirements are the project's ``dependencies`` plus the ``rollbar`` extra, less
   what only a local command needs (``python-dotenv``: Lambda never reads a ``.env``); the
   sandbox, dashboard and dev extras — trustme, Streamlit, pandas, pytest, moto, … — are never
   considered;
2. every version is pinned by the committed lockfile ``requirements/lambda.txt`` (``make lock``
   resolves it for CPython 3.12 on manylinux x86_64), and pip installs binary wheels for the
   Lambda platform (``manylinux2014_x86_64``, CPython 3.12) with ``--target``, so the bundle is
   the same whatever machine builds it; ``build/lambda/requirements.lock`` records the result;
3. ``src/health_score`` is copied without the dashboard, the command line, the default config
   and this script (the Lambda never imports them), and ``config/`` (weights, thresholds,
   sources, account mapping) beside it;
4. when an interpreter of the target version is on ``PATH`` the bundle is byte-compiled with it
   (``unchecked-hash`` .pyc files: ``/var/task`` is read-only, so without them every cold start
   would compile every module again);
5. the zip is deterministic: sorted entries, fixed timestamps and permissions.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = ROOT / "build" / "lambda.zip"
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
#: Wheel tags accepted for a platform: the Lambda Python 3.12 runtime (Amazon Linux 2023, glibc
#: 2.34) runs manylinux_2_28 wheels too, which is all some packages (NumPy 2.5) publish.
PLATFORM_TAGS = {LAMBDA_PLATFORM: ("manylinux_2_28_x86_64", "manylinux2014_x86_64")}
PROJECT = "health-score-middleware"
#: Runtime dependencies only local commands need (the CLI and dashboard read ``.env``).
LOCAL_ONLY = frozenset({"python-dotenv"})
#: The committed pins the bundle installs from.
LOCKFILE = ROOT / "requirements" / "lambda.txt"
#: Optional extras the Lambda uses.
EXTRAS = ("rollbar",)
#: Parts of the product package the Lambda never imports.
EXCLUDED_SOURCES = (
    "dashboard",
    "lambda_package.py",
    "cli.py",
    "__main__.py",
    "envfile.py",
    "defaults",
)
PACKAGE = "health_score"
#: Folders of installed packages that are never needed at run time.
PRUNED_DIRS = ("__pycache__", "bin")
#: Build-time and type-checking files of installed packages (C sources, Cython, stubs).
PRUNED_SUFFIXES = (".pyx", ".pxd", ".pxi", ".h", ".c", ".pyi")
#: The AWS services whose botocore models the Lambda needs (S3 artifacts, the secret, STS for
#: credential providers); the other ~400 service models are 27 MB the bundle does not carry.
BOTOCORE_SERVICES = frozenset({"s3", "secretsmanager", "sts"})
#: Parts of NumPy scoring never imports: its own test suites (≈12 MB), the Fortran wrapper
#: generator and the PyInstaller hook.
NUMPY_PRUNED = ("f2py", "_pyinstaller")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_LEVEL = 6  # level 9 takes 5x as long for a zip 3% smaller


class PackageError(Exception):
    """The bundle could not be built (pip failed, missing project file, …)."""


@dataclass(frozen=True, slots=True)
class Bundle:
    path: Path
    files: int
    unzipped_bytes: int
    zipped_bytes: int
    compiled: bool
    python_version: str
    platform: str
    pins: tuple[str, ...]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise PackageError(f"cannot read requirement {requirement!r} in pyproject.toml")
    return canonical(match.group(1))


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The Lambda's requirement specifiers, as written in pyproject.toml."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    return [r for r in requirements if _requirement_name(r) not in LOCAL_ONLY]


def target_interpreter(python_version: str) -> str | None:
    """A working Python of ``python_version`` on this machine (to byte-compile with), if any."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
        return sys.executable
    candidates = [shutil.which(f"python{python_version}")]
    candidates += [
        str(path)
        for path in sorted(Path.home().glob(f".pyenv/versions/{python_version}*/bin"))
        for path in [path / f"python{python_version}"]
    ]
    for candidate in candidates:
        if candidate is None or not Path(candidate).exists():
            continue
        check = subprocess.run(  # noqa: S603 (a Python found on PATH, fixed arguments)
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode == 0 and check.stdout.strip() == python_version:
            return candidate
    return None


def _run(command: Sequence[str], what: str) -> None:
    # The commands are this module's own (pip, compileall) with paths it chose.
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise PackageError(f"{what} failed (exit {result.returncode}):\n{tail}")


def platform_args(platform: str) -> list[str]:
    """``--platform TAG`` for each wheel tag the platform accepts."""
    return [arg for tag in PLATFORM_TAGS.get(platform, (platform,)) for arg in ("--platform", tag)]


def install_dependencies(
    target: Path, requirements: Sequence[str], constraints: Path, python_version: str, platform: str
) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "--only-binary=:all:",
            *(
                arg
                for tag in PLATFORM_TAGS.get(platform, (platform,))
                for arg in ("--platform", tag)
            ),
            "--implementation",
            "cp",
            "--python-version",
            python_version,
            "--no-compile",
            "--upgrade",
            "--constraint",
            str(constraints),
            *requirements,
        ],
        f"pip install for Python {python_version} on {platform}",
    )


def _prune(folder: Path) -> None:
    for name in PRUNED_DIRS:
        for path in sorted(folder.rglob(name), reverse=True):
            if path.is_dir():
                shutil.rmtree(path)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in PRUNED_SUFFIXES:
            path.unlink()
    numpy = folder / "numpy"
    if numpy.is_dir():
        for path in sorted(numpy.rglob("tests"), reverse=True):
            if path.is_dir():
                shutil.rmtree(path)
        for name in NUMPY_PRUNED:
            if (numpy / name).is_dir():
                shutil.rmtree(numpy / name)
    models = folder / "botocore" / "data"
    if models.is_dir():
        for service in sorted(models.iterdir()):
            if service.is_dir() and service.name not in BOTOCORE_SERVICES:
                shutil.rmtree(service)


def copy_project(target: Path) -> None:
    shutil.copytree(
        ROOT / "src" / PACKAGE,
        target / PACKAGE,
        ignore=lambda directory, names: [
            n
            for n in names
            if n in {"__pycache__", ".mypy_cache"}
            or (Path(directory) == ROOT / "src" / PACKAGE and n in EXCLUDED_SOURCES)
            or n.endswith((".pyc", ".pyo"))
        ],
    )
    config = ROOT / "config"
    if not config.is_dir():
        raise PackageError(f"{config} is missing; the Lambda reads its configuration from it")
    shutil.copytree(
        config,
        target / "config",
        ignore=lambda _d, names: [n for n in names if n.startswith(".")],
    )


def _installed_pins(target: Path) -> list[str]:
    pins = []
    for dist in importlib.metadata.distributions(path=[str(target)]):
        name = dist.metadata["Name"]
        if name:
            pins.append(f"{canonical(name)}=={dist.version}")
    return sorted(pins)


def _files(folder: Path) -> Iterable[Path]:
    """Every file under ``folder``, in the order of their archive names."""
    return sorted(
        (p for p in folder.rglob("*") if p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def write_zip(folder: Path, output: Path) -> tuple[int, int]:
    """A deterministic zip of ``folder``; returns (file count, unzipped bytes)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".zip.tmp")
    count = size = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as archive:
        for path in _files(folder):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = path.stat().st_mode & 0o111
            info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
            data = path.read_bytes()
            archive.writestr(info, data, compresslevel=ZIP_LEVEL)
            count += 1
            size += len(data)
    tmp.replace(output)
    return count, size


def build(
    output: Path = DEFAULT_OUTPUT,
    *,
    python_version: str = LAMBDA_PYTHON,
    platform: str = LAMBDA_PLATFORM,
    work: Path | None = None,
    compile_bytecode: bool = True,
) -> Bundle:
    """Build the deployment zip at ``output`` (see the module docstring for what goes in)."""
    work = work or output.parent / "lambda"
    if work.exists():
        shutil.rmtree(work)
    package = work / "package"
    package.mkdir(parents=True)
    if not LOCKFILE.is_file():
        raise PackageError(f"{LOCKFILE} is missing; `make lock` writes it")
    constraints = work / "constraints.txt"
    shutil.copyfile(LOCKFILE, constraints)
    install_dependencies(package, runtime_requirements(), constraints, python_version, platform)
    _prune(package)
    pins = _installed_pins(package)
    (work / "requirements.lock").write_text("\n".join(pins) + "\n", encoding="utf-8")
    copy_project(package)
    interpreter = target_interpreter(python_version) if compile_bytecode else None
    if interpreter is not None:
        _run(
            [
                interpreter,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                "-d",
                "/var/task",
                str(package),
            ],
            f"byte-compiling with {interpreter}",
        )
    files, unzipped = write_zip(package, output)
    return Bundle(
        path=output,
        files=files,
        unzipped_bytes=unzipped,
        zipped_bytes=output.stat().st_size,
        compiled=interpreter is not None,
        python_version=python_version,
        platform=platform,
        pins=tuple(pins),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m health_score.lambda_package", description="Build the Lambda deployment zip."
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, metavar="ZIP")
    parser.add_argument("--python-version", default=LAMBDA_PYTHON, metavar="X.Y")
    parser.add_argument("--platform", default=LAMBDA_PLATFORM, metavar="PIP_PLATFORM")
    parser.add_argument("--no-compile", action="store_true", help="do not byte-compile")
    args = parser.parse_args(argv)
    try:
        bundle = build(
            args.output,
            python_version=args.python_version,
            platform=args.platform,
            compile_bytecode=not args.no_compile,
        )
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mib = 1024 * 1024
    print(
        f"{bundle.path}: {bundle.files} files, {bundle.unzipped_bytes / mib:.1f} MiB unzipped, "
        f"{bundle.zipped_bytes / mib:.1f} MiB zipped (Python {bundle.python_version}, "
        f"{bundle.platform}, {'byte-compiled' if bundle.compiled else 'source only'})"
    )
    print(f"pinned: {', '.join(bundle.pins)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
