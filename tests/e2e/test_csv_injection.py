"""CSV formula injection: hostile account names through the real pipeline, opened by LibreOffice.

Every CSV meant for people (the run's ``scores.csv``, ``--output``, the ``metrics.csv`` printout
and the dashboard's two downloads) is converted to xlsx in one ``soffice --headless`` call (it is
slow to start) and its cells read from the sheet XML: no cell may be a formula, the hostile names
come back as text, negative numbers as numbers. ``raw.csv`` is not guarded: it re-scores to the
byte-identical result. Skipped without ``soffice`` locally; with ``CI`` set it fails instead.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest

from health_score.cli import main as cli_main
from health_score.dashboard import frames
from health_score.loaders.csv_output import METRIC_COLUMNS
from health_score.loaders.explanation import metric_csv_lines
from tests.conftest import DEFAULT_CONFIG, required_in_ci
from tests.raw_support import edited_raw

pytestmark = pytest.mark.spreadsheet

#: account id → hostile name; the raw reader strips the tab of the last one (so it is "=1").
HOSTILE = {
    "001Sb0000000001IAA": '=HYPERLINK("http://x","y")',
    "001Sb0000000002IAA": "@SUM(1)",
    "001Sb0000000003IAA": "-2+3",
    "001Sb0000000004IAA": "\t=1",
    "001Sb0000000005IAA": "+cmd|' /C calc'!A0",
}
#: What a spreadsheet shows for each: the name as text, after the guard's leading quote.
SHOWN = {
    "001Sb0000000001IAA": '\'=HYPERLINK("http://x","y")',
    "001Sb0000000002IAA": "'@SUM(1)",
    "001Sb0000000003IAA": "'-2+3",
    "001Sb0000000004IAA": "'=1",
    "001Sb0000000005IAA": "'+cmd|' /C calc'!A0",
}
NS = {"s": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def score(raw: Path, base: Path, period: str) -> Path:
    """``health-score run --dry-run --from-raw RAW``; returns the run folder."""
    runs = base / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    code = cli_main(
        [
            "run",
            "--dry-run",
            "--from-raw",
            str(raw),
            "--config-dir",
            str(DEFAULT_CONFIG),
            "--period",
            period,
            "--output",
            str(base / "health_scores.csv"),
            "--runs-dir",
            str(runs),
        ]
    )
    assert code == 0
    (folder,) = set(runs.iterdir()) - before
    return folder


@dataclass(frozen=True, slots=True)
class Cell:
    kind: str  # the xlsx cell type: s (shared text), str (formula text), n (number), …
    text: str
    formula: bool


def sheet_cells(xlsx: Path) -> list[list[Cell]]:
    """The first sheet's rows, read from the xlsx's XML (no spreadsheet library needed).

    The XML is LibreOffice's, converted in this test from the test's own CSVs (hence the
    ``noqa: S314``: not untrusted input)."""
    with zipfile.ZipFile(xlsx) as archive:
        names = archive.namelist()
        shared = []
        if "xl/sharedStrings.xml" in names:
            root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))  # noqa: S314
            shared = ["".join(t.text or "" for t in si.iter(f"{{{NS['s']}}}t")) for si in root]
        sheet = ElementTree.fromstring(archive.read("xl/worksheets/sheet1.xml"))  # noqa: S314
    rows = []
    for row in sheet.iterfind(".//s:sheetData/s:row", NS):
        cells = []
        for c in row.iterfind("s:c", NS):
            kind = c.get("t", "n")
            value = c.findtext("s:v", default="", namespaces=NS)
            inline = c.findtext("s:is/s:t", default="", namespaces=NS)
            text = shared[int(value)] if kind == "s" else inline if kind == "inlineStr" else value
            cells.append(Cell(kind, text, c.find("s:f", NS) is not None))
        rows.append(cells)
    return rows


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[list[Cell]]]]:
    """Two runs with hostile names; every CSV for people, opened by LibreOffice."""
    soffice = shutil.which("soffice")
    if soffice is None:
        required_in_ci("soffice is absent (install Debian's libreoffice-calc-nogui)")
    base = tmp_path_factory.mktemp("injection")
    names = {k: {"account_name": v} for k, v in HOSTILE.items()}
    first = score(edited_raw(base / "raw-09.csv", names), base, "2026-09")
    # The second period: the hostile accounts lose adoption, so their change is negative.
    worse = {k: {**v, "active_user_pct": "5", "feature_breadth_pct": "5"} for k, v in names.items()}
    second = score(edited_raw(base / "raw-10.csv", worse), base, "2026-10")

    files = base / "csv"
    files.mkdir()
    shutil.copy(second / "scores.csv", files / "scores.csv")
    shutil.copy(base / "health_scores.csv", files / "output.csv")
    npz = (second / "metrics.npz").read_bytes()
    (files / "metrics.csv").write_text("".join(metric_csv_lines(npz)), encoding="utf-8")
    # The dashboard's downloads, made as its views make them.
    current = frames.parse_scores("2026-10", (second / "scores.csv").read_bytes())
    earlier = frames.parse_scores("2026-09", (first / "scores.csv").read_bytes())
    table = frames.account_table(frames.with_change(current, earlier))
    (files / "accounts.csv").write_bytes(frames.download_csv(table))
    account = "001Sb0000000001IAA"
    rows = frames.account_metrics(frames.parse_metrics("2026-10", npz), account)
    (files / "account-metrics.csv").write_bytes(
        frames.download_csv(rows.assign(account_id=account)[list(METRIC_COLUMNS)])
    )
    # A control: the same names unguarded must open as formulas, or this test proves nothing.
    (files / "control.csv").write_text(
        "name\n" + "".join(f'"{v.replace(chr(34), chr(34) * 2)}"\n' for v in HOSTILE.values()),
        encoding="utf-8",
    )

    out = base / "xlsx"
    sources = sorted(files.iterdir())
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{base / 'lo-profile'}",  # its own, not a shared one
            "--headless",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out),
            *map(str, sources),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    yield {f.stem: sheet_cells(out / f"{f.stem}.xlsx") for f in sources}


def column(rows: list[list[Cell]], name: str) -> list[Cell]:
    at = [c.text for c in rows[0]].index(name)
    return [r[at] for r in rows[1:]]


def named(rows: list[list[Cell]], id_column: str = "account_id") -> dict[str, Cell]:
    ids = [c.text for c in column(rows, id_column)]
    return dict(zip(ids, column(rows, "account_name"), strict=True))


def test_the_control_shows_libreoffice_runs_unguarded_names_as_formulas(
    opened: dict[str, list[list[Cell]]],
) -> None:
    (hyperlink,) = opened["control"][1]
    assert hyperlink.formula and hyperlink.text == "y"  # the HYPERLINK ran


@pytest.mark.parametrize(
    "name", ["scores", "output", "metrics", "accounts", "account-metrics"], ids=str
)
def test_no_cell_of_a_csv_for_people_opens_as_a_formula(
    opened: dict[str, list[list[Cell]]], name: str
) -> None:
    assert [c for row in opened[name] for c in row if c.formula] == []


@pytest.mark.parametrize("name", ["scores", "output", "accounts"])
def test_hostile_names_come_back_as_text(opened: dict[str, list[list[Cell]]], name: str) -> None:
    shown = named(opened[name])
    for account_id, text in SHOWN.items():
        assert (shown[account_id].kind, shown[account_id].text) == ("s", text)


def test_negative_numbers_stay_numbers(opened: dict[str, list[list[Cell]]]) -> None:
    """The accounts download's change column and the metric rows' raw values."""
    accounts = opened["accounts"]
    ids = [c.text for c in column(accounts, "account_id")]
    change = dict(zip(ids, column(accounts, "change"), strict=True))
    for account_id in HOSTILE:
        assert change[account_id].kind == "n" and float(change[account_id].text) < 0
    # Account 1's sessions_per_user_trend_pct is -0.7 in the example file.
    metrics = opened["account-metrics"]
    raw = dict(
        zip(
            [c.text for c in column(metrics, "metric")],
            column(metrics, "raw_value"),
            strict=True,
        )
    )
    assert (raw["sessions_per_user_trend_pct"].kind, raw["sessions_per_user_trend_pct"].text) == (
        "n",
        "-0.7",
    )


def test_raw_csv_is_not_guarded_and_rescores_to_the_byte_identical_result(
    tmp_path: Path,
) -> None:
    names = {k: {"account_name": v} for k, v in HOSTILE.items()}
    hostile = edited_raw(tmp_path / "hostile.csv", names)
    first = score(hostile, tmp_path / "a", "2026-09")
    assert (first / "raw.csv").read_bytes() == hostile.read_bytes()
    again = score(first / "raw.csv", tmp_path / "b", "2026-09")
    assert (again / "scores.csv").read_bytes() == (first / "scores.csv").read_bytes()
    assert (tmp_path / "b" / "health_scores.csv").read_bytes() == (
        tmp_path / "a" / "health_scores.csv"
    ).read_bytes()
    # The guard is in scores.csv, and the dashboard reads the original names back.
    text = (first / "scores.csv").read_text(encoding="utf-8")
    assert "'@SUM(1)" in text and ",'-2+3," in text
    read = frames.parse_scores("2026-09", (first / "scores.csv").read_bytes())
    shown = dict(zip(read["account_id"], read["account_name"], strict=True))
    assert shown["001Sb0000000001IAA"] == '=HYPERLINK("http://x","y")'
    assert shown["001Sb0000000003IAA"] == "-2+3"
