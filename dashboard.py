"""The dashboard from a checkout: ``streamlit run dashboard.py`` (the seed document's command).

The app lives in :mod:`health_score.dashboard.app`; ``health-score dashboard`` starts the same app
from an installed copy.
"""

from __future__ import annotations

from health_score.dashboard.app import main

if __name__ == "__main__":  # `streamlit run` runs this file as __main__ on every rerun; a spawned
    # what-if worker imports it as __mp_main__ and must not draw the page.
    main()
