"""Benchmark: what importing config and validating sources.yaml load, and the package's imports.

Each scenario runs in a fresh interpreter and reports how many modules it added to
``sys.modules`` (over a bare ``python -c pass``) and whether the HTTP/AWS stack came with it.
Then the import graph of ``src/health_score`` read with ``ast`` (``tests/layers_support.py``, the
same walker ``tests/unit/test_layers.py`` asserts on): edges, cycles and imports that go up a
layer (records ← scoring ← config ← sources & loaders ← pipeline ← entry points).

    python benchmarks/import_graph.py [--src OTHER_CHECKOUT/src]   # e.g. main's, for "before"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.layers_support import cycles, imports, layer_of, package_modules  # noqa: E402

HEAVY = ("requests", "urllib3", "boto3", "botocore", "simple_salesforce", "stamina")

# The validating snippet works on checkouts before and after the sources layer took it over.
VALIDATE = """
from pathlib import Path
try:
    from health_score.sources.registry import load_sources
except ImportError:
    from health_score.config import load_sources
load_sources(Path('config'))
"""

SCENARIOS = {
    "import health_score.config": "import health_score.config",
    "config.load_config (folder, no mapping)": (
        "from pathlib import Path\nfrom health_score.config import load_config\n"
        "load_config(Path('config'), need_mapping=False)"
    ),
    "validate sources.yaml": VALIDATE,
    "import the Intercom, Jira, Looker packages": (
        "import health_score.sources.intercom, health_score.sources.jira, "
        "health_score.sources.looker"
    ),
}


def loaded(src: Path, code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=src.parent,
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the src/ folder to read")
    args = parser.parse_args()
    src: Path = args.src.resolve()
    print(f"checkout: {src}")

    bare = loaded(src, "pass")
    print("\nmodules added to a bare interpreter:")
    for label, code in SCENARIOS.items():
        mods = loaded(src, code) - bare
        own = sorted(m for m in mods if m == "health_score" or m.startswith("health_score."))
        heavy = [h for h in HEAVY if h in mods]
        print(
            f"  {label:<44} {len(mods):>4} modules, {len(own):>2} of health_score; "
            f"HTTP/AWS stack: {', '.join(heavy) or 'none'}"
        )

    modules = package_modules(src)
    found = imports(modules)
    top = {(i.source, i.target) for i in found if i.top_level and not i.dynamic}
    every = {(i.source, i.target) for i in found}
    up = sorted({i for i in found if layer_of(i.target) > layer_of(i.source)}, key=str)
    print(f"\nimport graph of {src / 'health_score'} ({len(modules)} modules):")
    print(f"  module-level edges: {len(top)}; with local and dynamic imports: {len(every)}")
    print(f"  local (function-level) imports: {sum(1 for i in found if not i.top_level)}")
    print(f"  cycles, module-level edges: {cycles(top) or 'none'}")
    print(f"  cycles, all edges:          {cycles(every) or 'none'}")
    print(f"  imports going up a layer: {len(up)}")
    for item in up:
        print(f"    {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
