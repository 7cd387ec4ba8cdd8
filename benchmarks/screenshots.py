"""Screenshots of every dashboard page, in headless Chromium driven by Playwright.

    .venv/bin/python benchmarks/screenshots.py [--accounts 250 10000] [--out build/screenshots]
    .venv/bin/python benchmarks/screenshots.py --runs-dir output/runs   (an existing history)

For each size, a year of demo history (``health-score backfill --demo --last 12 --accounts N``)
is made under ``--out/runs-N`` unless it is already there (the backfill skips months that have
an ok run), the dashboard is served on loopback with ``streamlit run``, and every view is saved
as ``--out/N/<view>.png`` (full page), plus the Accounts worklist's top row opened by a click
(``drill-down-from-worklist.png``). Prints each page's time to draw. Needs /usr/bin/chromium
(Debian's chromium) or ``--chromium PATH``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from health_score.dashboard import streamlit_command  # noqa: E402

VIEWS = ("Portfolio", "Accounts", "Account drill-down", "Alerts", "What-if", "Trends", "Validity")
HEADINGS = {
    "What-if": "What-if: new weights",
    "Validity": "Validity: does the score predict churn?",
}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_history(out: Path, accounts: int) -> Path:
    home = out / f"runs-{accounts}"
    home.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("health-score")),
        "backfill",
        "--demo",
        "--last",
        "12",
        "--accounts",
        str(accounts),
        "--quiet",
    ]
    subprocess.run(command, cwd=home, check=True)
    return home / "output" / "runs"


@contextmanager
def served(runs_dir: Path, log: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HSM_RUNS_DIR": str(runs_dir)}
    env.pop("DASHBOARD_PASSWORD", None)
    command = streamlit_command(REPO / "dashboard.py", port, headless=True)
    with (
        log.open("wb") as output,
        subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=output) as process,
    ):
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"streamlit exited with {process.returncode}; see {log}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310 - loopback
                        if r.read().strip() == b"ok":
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"streamlit did not start in 90 s; see {log}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_drawn(page: Any) -> None:
    """Until Streamlit has finished the script run and the charts had a moment to draw."""
    page.wait_for_timeout(300)  # the run the click asked for has started
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState"
        " === 'notRunning'",
        timeout=300_000,
    )
    page.wait_for_timeout(1200)


def shoot(url: str, target: Path, chromium: Path) -> None:
    from playwright.sync_api import sync_playwright

    target.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            start = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Portfolio", exact=True).wait_for(timeout=120_000)
            wait_drawn(page)
            print(f"  first render {time.perf_counter() - start:.1f} s")
            sidebar = page.get_by_test_id("stSidebarUserContent")
            for view in VIEWS:
                start = time.perf_counter()
                sidebar.get_by_text(view, exact=True).click()
                page.get_by_role("heading", name=HEADINGS.get(view, view)).first.wait_for(
                    timeout=180_000
                )
                wait_drawn(page)
                name = view.lower().replace(" ", "-")
                page.screenshot(path=str(target / f"{name}.png"), full_page=True)
                print(f"  {view}: {time.perf_counter() - start:.1f} s → {target / name}.png")
            sidebar.get_by_text("Accounts", exact=True).click()
            page.get_by_role("heading", name="Accounts").wait_for(timeout=60_000)
            wait_drawn(page)
            grid = page.locator('[data-testid="stDataFrame"]').first
            box = grid.bounding_box()
            if box is not None:
                start = time.perf_counter()
                page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the top row's marker
                page.get_by_role("heading", name="Why this score").wait_for(timeout=60_000)
                wait_drawn(page)
                page.screenshot(path=str(target / "drill-down-from-worklist.png"), full_page=True)
                print(f"  worklist click → drill-down: {time.perf_counter() - start:.1f} s")
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, nargs="+", default=[250, 10000])
    parser.add_argument("--runs-dir", type=Path, help="an existing runs folder instead")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "screenshots")
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    args = parser.parse_args()
    if not args.chromium.exists():
        print(f"error: no Chromium at {args.chromium} (apt-get install chromium)", file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs = (
        [("custom", args.runs_dir.resolve())]
        if args.runs_dir
        else [(str(n), None) for n in args.accounts]
    )
    for name, runs_dir in jobs:
        if runs_dir is None:
            print(f"{name} accounts: a year of demo history (skipped when already made)…")
            runs_dir = demo_history(out, int(name))
        print(f"{name}: serving {runs_dir}")
        with served(runs_dir, out / f"streamlit-{name}.log") as url:
            shoot(url, out / name, args.chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
