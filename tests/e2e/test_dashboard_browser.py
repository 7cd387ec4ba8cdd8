"""Real-browser smoke test: ``streamlit run dashboard.py`` on loopback, loaded in headless
Chromium (Debian's ``chromium``) driven by Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from health_score.dashboard import streamlit_command
from health_score.pipeline import RunOptions, run

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is absent (install Debian's chromium package)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:  # noqa: S310 - loopback http
                if response.read().strip() == b"ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError("streamlit did not become healthy in time")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The dashboard served by ``streamlit run`` over a runs folder with one example run."""
    runs_dir = tmp_path / "runs"
    summary = run(
        RunOptions(
            config_dir=REPO / "config",
            from_raw=REPO / "examples" / "raw_metrics.csv",
            period="2026-10",
            runs_dir=str(runs_dir),
            output=tmp_path / "scores.csv",
        )
    )
    assert summary.run_id is not None, summary.messages
    yield from serve(runs_dir, tmp_path)


@pytest.fixture
def served_history(tmp_path: Path) -> Iterator[str]:
    """The dashboard over two monthly runs with outcomes (tests/unit/test_validity_whatif.py)."""
    from tests.unit.test_validity_whatif import write_history

    runs_dir, _ = write_history(tmp_path / "history", copies=10, min_events=None)
    yield from serve(runs_dir, tmp_path)


def serve(runs_dir: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "HSM_RUNS_DIR": str(runs_dir)}
    env.pop("DASHBOARD_PASSWORD", None)
    log = (tmp_path / "streamlit.log").open("wb")
    command = streamlit_command(REPO / "dashboard.py", port, headless=True)
    with log, subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log) as process:
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_the_served_dashboard_shows_the_portfolio_in_a_real_browser(served: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Portfolio", exact=True).wait_for(timeout=30_000)
            page.get_by_text("Customer health scores — 2026-10").wait_for(timeout=10_000)
            page.get_by_role("heading", name="Score distribution").wait_for(timeout=10_000)
            page.locator("canvas, svg").first.wait_for(timeout=20_000)  # a chart was drawn
            assert page.locator('[data-testid="stException"]').count() == 0
            assert not errors, errors
        finally:
            browser.close()


def test_the_validity_page_draws_its_charts_in_a_real_browser(served_history: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served_history, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Portfolio", exact=True).wait_for(timeout=30_000)
            page.get_by_text("Validity", exact=True).click()
            page.get_by_role("heading", name="Validity: does the score predict churn?").wait_for(
                timeout=30_000
            )
            page.get_by_role("heading", name="ROC curve").wait_for(timeout=10_000)
            page.get_by_text("The score separates churners from renewers well").wait_for(
                timeout=10_000
            )
            # ROC, churn by tier and capture over lead time: three charts drawn.
            charts = page.locator('[data-testid="stVegaLiteChart"]')
            charts.nth(2).wait_for(timeout=20_000)
            page.wait_for_timeout(1500)  # let the charts finish drawing for the screenshot
            shot = os.environ.get("HSM_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
            assert charts.count() == 3
            assert page.locator('[data-testid="stException"]').count() == 0
            assert not errors, errors
        finally:
            browser.close()


@pytest.fixture
def served_two_periods(tmp_path: Path) -> Iterator[str]:
    """The dashboard over the AppTest fixture's two periods (with owner, ARR and renewal)."""
    from tests.e2e.test_dashboard import CONTEXT, EXAMPLE, SECOND_PERIOD, make_run, with_context
    from tests.raw_support import edited_raw

    runs_dir = tmp_path / "runs"
    make_run(EXAMPLE, runs_dir, "2026-09")
    second = make_run(edited_raw(tmp_path / "raw-2026-10.csv", SECOND_PERIOD), runs_dir, "2026-10")
    with_context(runs_dir / second / "scores.csv", CONTEXT)
    yield from serve(runs_dir, tmp_path)


def test_the_journey_open_worklist_click_the_top_account_see_why_and_what_changed(
    served_two_periods: str,
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(served_two_periods, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Portfolio", exact=True).wait_for(timeout=30_000)
            page.get_by_test_id("stSidebarUserContent").get_by_text("Accounts", exact=True).click()
            page.get_by_role("heading", name="Accounts").wait_for(timeout=30_000)
            grid = page.locator('[data-testid="stDataFrame"]').first
            grid.wait_for(timeout=20_000)
            page.wait_for_timeout(800)  # the grid draws on a canvas
            box = grid.bounding_box()
            assert box is not None
            # The top row (Cyberdyne Hotels #6: Healthy → At Risk, −21.9): its row marker.
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
            page.get_by_role("heading", name="Account drill-down").wait_for(timeout=30_000)
            page.get_by_role("heading", name="Why this score").wait_for(timeout=10_000)
            page.get_by_text(
                "Score 86.9 → 65.0 (-21.9) since the previous period; tier Healthy → At Risk."
            ).wait_for(timeout=10_000)
            page.get_by_text("Qualitative cap").first.wait_for(timeout=10_000)
            # The owner beside the score (a paragraph; the grids may hold the name too).
            owner = page.get_by_role("paragraph").filter(has_text="Dana Scully")
            owner.first.wait_for(timeout=10_000)
            page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=20_000)
            page.wait_for_timeout(1000)
            shot = os.environ.get("HSM_SCREENSHOT")
            if shot:
                page.screenshot(path=shot, full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0
            assert not errors, errors
        finally:
            browser.close()
