"""The dashboard's data side: reading run folders, shaping them for views, and what-if scoring.

Nothing here imports Streamlit; ``dashboard.py`` at the repository root is the view. The
dashboard holds no scoring rules: every score it shows comes from a run's artifacts or from
``health_score.scoring`` called with the run's own raw inputs and config.
"""

from __future__ import annotations
