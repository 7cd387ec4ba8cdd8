"""What-if: re-score a run's own raw inputs with candidate weights (``health_score.scoring``).

The candidate weights are kept valid the way the config loader requires (each group non-negative,
summing to 1): entered weights are re-normalised per group and rounded to four places with the
remainder given to the largest parts, so the sum is exactly 1 and the ``weights.yaml`` offered
for download holds exactly the numbers that were scored.

Accounts are re-scored with the array scorer (:mod:`health_score.scoring.vector`, the exact
``Decimal`` rule for the accounts it cannot decide, as a run scores): about 0.1 s for 10,000
accounts. The exact rule for every account (``workers`` given, or a config the array scorer does
not support) takes about two seconds per 10,000 on one core, so large runs are then scored in
shards across worker processes (each keeps the run's parsed inputs, so only the weights travel).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from health_score.columns import AccountTable
from health_score.config import (
    COMPONENT_KEYS,
    HEALTH_SCORE,
    WEIGHTS_FILE,
    load_scoring_config,
    to_decimal,
)
from health_score.rawfile import read_raw
from health_score.records import AccountInput
from health_score.scoring.composite import Model
from health_score.scoring.spec import CHURN_RISK, ScoringConfig
from health_score.scoring.vector import VectorModel, empty_result, exact_row, put, resolve

#: (YAML section, ((key, weight), …)) in config order: health_score, churn_risk, each dimension.
WeightSet = tuple[tuple[str, tuple[tuple[str, Decimal], ...]], ...]
#: (account_id, published final score or None, tier) for each account, in raw-file order.
Outcome = tuple[tuple[str, Decimal | None, str], ...]

PLACES = Decimal("0.0001")
PARALLEL_MIN_ACCOUNTS = 2000
_COMPONENT_YAML = {v: k for k, v in COMPONENT_KEYS.items()}


class WeightError(ValueError):
    """A weight group that cannot be re-normalised (every weight is 0)."""


def weight_sections(config: ScoringConfig) -> WeightSet:
    """The config's weights, grouped as weights.yaml groups them."""
    sections: list[tuple[str, tuple[tuple[str, Decimal], ...]]] = [
        (
            HEALTH_SCORE,
            tuple((_COMPONENT_YAML[k], w) for k, w in config.component_weights.items()),
        ),
        (CHURN_RISK, tuple(config.churn_risk_weights.items())),
    ]
    for name, dim in config.dimensions.items():
        sections.append((name, tuple((m.name, m.weight) for m in dim.metrics)))
    return tuple(sections)


def apply_weights(config: ScoringConfig, weights: WeightSet) -> ScoringConfig:
    """``config`` with ``weights`` in place of its own (thresholds and rules unchanged)."""
    groups = dict(weights)
    components = {COMPONENT_KEYS[k]: w for k, w in groups.get(HEALTH_SCORE, ())}
    churn = dict(groups.get(CHURN_RISK, ()))
    metric_weights = {name: dict(groups[name]) for name in config.dimensions if name in groups}
    return config.with_weights(
        component_weights=components or None,
        churn_risk_weights=churn or None,
        metric_weights=metric_weights,
    )


def normalise_group(entered: Sequence[tuple[str, Decimal]]) -> tuple[tuple[str, Decimal], ...]:
    """Weights that sum to exactly 1: as entered when they already do, otherwise each divided
    by the total, rounded to four places, the last units going to the largest remainders."""
    if any(w < 0 for _, w in entered):
        raise WeightError("weights must not be negative")
    total = sum((w for _, w in entered), Decimal(0))
    if total == 0:
        raise WeightError("at least one weight in the group must be above 0")
    if total == 1:
        return tuple(entered)
    exact = [(k, w / total) for k, w in entered]
    rounded = {k: v.quantize(PLACES, rounding=ROUND_DOWN) for k, v in exact}
    short = int((1 - sum(rounded.values(), Decimal(0))) / PLACES)
    by_remainder = sorted(exact, key=lambda kv: (kv[1] - rounded[kv[0]], kv[1]), reverse=True)
    for key, _ in by_remainder[:short]:
        rounded[key] += PLACES
    return tuple((k, rounded[k]) for k, _ in entered)


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


_SECTION = re.compile(r"^(?P<name>[A-Za-z_][\w-]*)\s*:\s*(?:#.*)?$")
_ITEM = re.compile(
    r"^(?P<indent>\s+)(?P<key>[A-Za-z_][\w-]*)(?P<sep>\s*:\s*)(?P<value>[^\s#][^#]*?)"
    r"(?P<rest>\s*(?:#.*)?)$"
)


def rewrite_weights_yaml(original: str, weights: WeightSet) -> str:
    """``original`` weights.yaml with each weight replaced, comments and layout kept.

    When the original is laid out in a way this line editor does not recognise (flow mappings,
    anchors), the result is a plain block-style file with the same sections instead.
    """
    groups = {section: dict(items) for section, items in weights}
    out: list[str] = []
    section: str | None = None
    replaced: set[tuple[str, str]] = set()
    for line in original.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        top = _SECTION.match(body)
        if top:
            section = top["name"]
            out.append(line)
            continue
        item = _ITEM.match(body)
        if item and section in groups and item["key"] in groups[section]:
            wanted_value = groups[section][item["key"]]
            replaced.add((section, item["key"]))
            if _same_number(item["value"], wanted_value):  # unmoved: the user's text, as is
                out.append(line)
                continue
            value = _number(wanted_value)
            out.append(f"{item['indent']}{item['key']}{item['sep']}{value}{item['rest']}{ending}")
            continue
        out.append(line)
    wanted = {(s, k) for s, items in weights for k, _ in items}
    if replaced != wanted:
        return plain_weights_yaml(weights)
    return "".join(out)


def _same_number(text: str, value: Decimal) -> bool:
    """True when ``text`` (a weights.yaml value) is the number ``value`` (``0.10`` is 0.1)."""
    try:
        return Decimal(text.strip()) == value
    except ArithmeticError:  # not a plain number (a quoted string, a tag…): rewrite it
        return False


def plain_weights_yaml(weights: WeightSet) -> str:
    lines = ["# Candidate weights from the dashboard's what-if view.\n"]
    for section, items in weights:
        lines.append(f"{section}:\n")
        lines.extend(f"  {key}: {_number(w)}\n" for key, w in items)
    return "".join(lines)


def read_weights_yaml(text: str) -> dict[str, dict[str, Decimal]]:
    """The weights in a weights.yaml text (for checking a rewritten file; no validation)."""
    import yaml

    document = yaml.safe_load(text) or {}
    out: dict[str, dict[str, Decimal]] = {}
    for section, items in document.items():
        if isinstance(items, Mapping):
            out[str(section)] = {
                str(k): v for k, raw in items.items() if (v := to_decimal(raw)) is not None
            }
    return out


# --------------------------------------------------------------------------------------------
# Scoring many accounts


def score_outcomes(accounts: Sequence[AccountInput], config: ScoringConfig) -> Outcome:
    model = Model(config)
    out: list[tuple[str, Decimal | None, str]] = []
    for account in accounts:
        score = model.score(account)
        out.append((score.account_id, score.final_published, score.tier))
    return tuple(out)


def with_places(table: AccountTable) -> AccountTable:
    """``table`` (built from accounts in memory) with each metric's most decimal places, read
    from the exact values: the array scorer then decides most cells in exact integers instead
    of leaving them to the ``Decimal`` rule (as for a table read from a raw file)."""
    places = [0] * len(table.table.metrics)
    if table.inputs is not None:
        for j, metric in enumerate(table.table.metrics):
            for account in table.inputs:
                value = account.metrics.get(metric)
                exponent = value.as_tuple().exponent if value is not None else 0
                if isinstance(exponent, int) and -exponent > places[j]:
                    places[j] = -exponent
    else:
        return table
    return replace(table, table=replace(table.table, places=tuple(places)))


def score_table(
    table: AccountTable, config: ScoringConfig
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    """Every account of ``table`` scored with ``config``: published final scores ×10 (-1: no
    score), tier indexes into ``config.tier_labels`` and which accounts could be scored.

    The array scorer with the exact rule for the accounts it cannot decide, as a run scores
    (:func:`health_score.batch.score_batch`), without building the run's output rows.
    """
    model = Model(config)
    vmodel = VectorModel(model, table.table.metrics, table.table.segments)
    n = table.size
    result = None
    if vmodel.supported and n:
        try:
            result = vmodel.score(table.table)
            resolve(vmodel, result, table.table.segment, table.values)
        except Exception:  # an unusual config: the exact rule below scores every account
            result = None
    if result is None:
        result = empty_result(n, len(model.dimensions), vmodel.slots)
    ok = np.ones(n, dtype=bool)
    for index in np.flatnonzero(result.exact).tolist():
        account = table.account(index)
        try:
            put(result, index, exact_row(vmodel, account, model.score_compact(account)))
        except Exception:  # the run listed it as a failure too; left out of the figures
            ok[index] = False
    return result.final, result.tier, ok


def outcome_from_arrays(
    table: AccountTable,
    config: ScoringConfig,
    final: NDArray[np.int64],
    tier: NDArray[np.int64],
    ok: NDArray[np.bool_],
) -> Outcome:
    """:func:`score_table`'s arrays as an :data:`Outcome`; an account that could not be scored
    is scored again with the exact rule, which raises its error (as :func:`score_outcomes`)."""
    labels = config.tier_labels
    out: list[tuple[str, Decimal | None, str]] = []
    for index, (account_id, f, t) in enumerate(
        zip(table.ids, final.tolist(), tier.tolist(), strict=True)
    ):
        if not ok[index]:
            score = Model(config).score(table.account(index))
            out.append((score.account_id, score.final_published, score.tier))
            continue
        out.append((account_id, None if f < 0 else Decimal(f).scaleb(-1), labels[t]))
    return tuple(out)


_worker_inputs: dict[tuple[str, str], tuple[ScoringConfig, tuple[AccountInput, ...]]] = {}


def load_inputs(raw_path: Path, config_dir: Path) -> tuple[ScoringConfig, tuple[AccountInput, ...]]:
    """The run's scoring config and its raw inputs, read the way the pipeline reads them."""
    config = load_scoring_config(config_dir)
    return config, read_raw(raw_path, config).accounts


def _score_shard(
    raw_path: str, config_dir: str, weights: WeightSet, start: int, stop: int
) -> Outcome:
    """Worker side: parse the run once per process, then score a slice with ``weights``."""
    key = (raw_path, config_dir)
    if key not in _worker_inputs:
        if len(_worker_inputs) >= 4:
            _worker_inputs.clear()
        _worker_inputs[key] = load_inputs(Path(raw_path), Path(config_dir))
    config, accounts = _worker_inputs[key]
    return score_outcomes(accounts[start:stop], apply_weights(config, weights))


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool(workers: int) -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn, not fork: the dashboard's server is multi-threaded.
            _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        return _pool


def shutdown_pool() -> None:
    """Stop the worker processes (tests and benchmarks call this; at exit it happens anyway)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


def default_workers() -> int:
    """Extra processes to use beside the calling one: all cores but one, at most four."""
    return max(0, min((os.cpu_count() or 1) - 1, 4))


@dataclass(frozen=True, slots=True)
class Migration:
    """One what-if result: the outcome before (run's weights) and after (candidate weights)."""

    before: Outcome
    after: Outcome

    def changed(self) -> list[tuple[str, Decimal | None, str, Decimal | None, str]]:
        return [
            (b[0], b[1], b[2], a[1], a[2])
            for b, a in zip(self.before, self.after, strict=True)
            if b[2] != a[2]
        ]


class WhatIf:
    """One run's raw inputs and config, re-scored with candidate weights (results memoised)."""

    def __init__(
        self,
        raw_path: Path,
        config_dir: Path,
        *,
        workers: int | None = None,
        parallel_min_accounts: int = PARALLEL_MIN_ACCOUNTS,
    ) -> None:
        """``workers``: score with the exact rule for every account, in that many extra
        processes (default: the array scorer in this process)."""
        self.raw_path = raw_path
        self.config_dir = config_dir
        self.config, self.accounts = load_inputs(raw_path, config_dir)
        self.table = (
            AccountTable.from_accounts(self.accounts, self.config) if workers is None else None
        )
        self.weights = weight_sections(self.config)
        self.original_yaml = (config_dir / WEIGHTS_FILE).read_text(encoding="utf-8-sig")
        extra = default_workers() if workers is None else workers
        self.workers = extra if len(self.accounts) >= parallel_min_accounts else 0
        self._memo: OrderedDict[WeightSet, Outcome] = OrderedDict()
        self._lock = threading.Lock()

    def outcome(self, weights: WeightSet) -> Outcome:
        with self._lock:
            if weights in self._memo:
                self._memo.move_to_end(weights)
                return self._memo[weights]
        result = self._score(weights)
        with self._lock:
            self._memo[weights] = result
            while len(self._memo) > 16:
                self._memo.popitem(last=False)
        return result

    def migration(self, weights: WeightSet) -> Migration:
        return Migration(self.outcome(self.weights), self.outcome(weights))

    def candidate_yaml(self, weights: WeightSet) -> str:
        return rewrite_weights_yaml(self.original_yaml, weights)

    def _score(self, weights: WeightSet) -> Outcome:
        if self.table is not None:
            config = apply_weights(self.config, weights)
            return outcome_from_arrays(self.table, config, *score_table(self.table, config))
        if self.workers:
            try:
                return self._score_parallel(weights)
            except BrokenProcessPool:  # a worker died (e.g. killed for memory): go on alone
                shutdown_pool()
                self.workers = 0
        return score_outcomes(self.accounts, apply_weights(self.config, weights))

    def _score_parallel(self, weights: WeightSet) -> Outcome:
        pool = _shared_pool(self.workers)
        shards = self.workers + 1  # the calling process scores the last shard itself
        size = -(-len(self.accounts) // shards)
        futures: list[Future[Outcome]] = [
            pool.submit(
                _score_shard,
                str(self.raw_path),
                str(self.config_dir),
                weights,
                index * size,
                (index + 1) * size,
            )
            for index in range(shards - 1)
        ]
        own = score_outcomes(
            self.accounts[(shards - 1) * size :], apply_weights(self.config, weights)
        )
        parts: list[tuple[str, Decimal | None, str]] = []
        for future in futures:
            parts.extend(future.result())
        return (*parts, *own)


def sections_from_entered(
    entered: Mapping[str, Sequence[tuple[str, Decimal]]],
) -> tuple[WeightSet, dict[str, str]]:
    """Re-normalise every group; a group that cannot be (all 0) keeps the entered values out
    and is reported in the second result (section → message)."""
    sections: list[tuple[str, tuple[tuple[str, Decimal], ...]]] = []
    problems: dict[str, str] = {}
    for section, items in entered.items():
        try:
            sections.append((section, normalise_group(items)))
        except WeightError as exc:
            problems[section] = str(exc)
    return tuple(sections), problems
