"""The dashboard's data side: reading run folders, shaping them for views, and what-if scoring.

Nothing here imports Streamlit; ``dashboard.py`` at the repository root is the view. The
dashboard holds no scoring rules: every score it shows comes from a run's artifacts or from
``health_score.scoring`` called with the run's own raw inputs and config.
"""

from __future__ import annotations

import sys
from pathlib import Path


def streamlit_command(app: Path, port: int, *, headless: bool = False) -> list[str]:
    """How the dashboard is served: Streamlit on 127.0.0.1 only, no usage statistics, no file
    watcher (the command, the screenshots and the browser tests all serve it this way)."""
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
    ]
    if headless:
        command += ["--server.headless", "true"]
    return [*command, "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
