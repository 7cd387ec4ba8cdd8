"""A deterministic synthetic customer portfolio.

Each account gets a latent health (drawn so that every tier has accounts), a segment, ids in each
system, and which sources know it. Every metric of the scoring config gets a *target* raw value
near the account's latent health; the vendor generators (``health_score_sandbox.<vendor>``) then
draw raw records (conversations, bugs, Look rows, Salesforce rows) around those targets, and compute
the *expected* raw metrics back from the records with a simple, independent definition
(:mod:`health_score_sandbox.truth`).

Accounts are the sandbox's own records of the mapping file's columns; the scoring model is read
from ``weights.yaml`` and ``thresholds.yaml`` by :mod:`health_score_sandbox.config`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from health_score_sandbox.config import (
    DEFAULT_CONFIG_DIR,
    Band,
    ScoringModel,
    load_scoring_model,
)

DEFAULT_SEED = 7
DEFAULT_ACCOUNTS = 250
SOURCES = ("intercom", "jira", "looker", "salesforce")

#: The columns of account_mapping.csv, in the documented order.
MAPPING_COLUMNS = (
    "sf_account_id",
    "intercom_company_id",
    "looker_customer_id",
    "account_name",
    "segment",
    "jira_project_key",
    "jira_component",
)

# Latent health bands (score ranges) and their shares, so every tier is represented.
_HEALTH_MIX = (
    (0.15, 91.0, 99.0),  # Champion
    (0.35, 77.0, 89.0),  # Healthy
    (0.30, 60.0, 75.0),  # At Risk
    (0.20, 20.0, 58.0),  # Critical
)

_NAME_A = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Aperture",
    "Massive",
    "Nakatomi",
    "Monarch",
    "Pied Piper",
    "Dunder",
)
_NAME_B = (
    "Labs",
    "Systems",
    "Holdings",
    "Group",
    "Analytics",
    "Logistics",
    "Health",
    "Foods",
    "Retail",
    "Hotels",
    "Media",
    "Energy",
    "Finance",
    "Software",
    "Travel",
)


def salesforce_id(prefix: str, number: int) -> str:
    """A valid 18-character Salesforce id (15-char id + case-insensitivity checksum)."""
    base = f"{prefix}{number:0{15 - len(prefix)}d}"[:15]
    alphabet = string.ascii_uppercase + "012345"
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if ch.isupper())
        suffix += alphabet[bits]
    return base + suffix


def target_raw(band: Band, lower_is_better: bool, score: float) -> float:
    """The raw value that normalises to ``score`` (0–100): the normaliser's inverse."""
    del lower_is_better  # the band's order already carries the direction
    green, yellow, red = float(band.green), float(band.yellow), float(band.red)
    score = min(max(score, 0.0), 100.0)
    if score >= 50:
        return yellow + (score - 50) / 50 * (green - yellow)
    return red + score / 50 * (yellow - red)


@dataclass(frozen=True, slots=True)
class Account:
    """One synthetic customer as a row of account_mapping.csv describes it.

    ``account_id`` is the key the pipeline reports under: the Salesforce id when the row has one,
    otherwise ``intercom:<company id>`` (such rows always carry an Intercom company id here).
    """

    account_id: str
    account_name: str
    segment: str
    sf_account_id: str | None = None
    intercom_company_id: str | None = None
    looker_customer_id: str | None = None
    jira_project_key: str | None = None
    jira_component: str | None = None


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """One synthetic account and what the generators should aim for."""

    account: Account
    health: float  # latent 0–100
    present: frozenset[str]  # sources that hold data for this account
    targets: Mapping[str, float]  # metric → target raw value
    churn_signals: tuple[tuple[str, str, str], ...] = ()  # (severity, confidence, status)

    @property
    def account_id(self) -> str:
        return self.account.account_id

    def has(self, source: str) -> bool:
        return source in self.present


@dataclass
class Portfolio:
    """The accounts and their profiles; vendor data is generated from this."""

    seed: int
    as_of: date
    scoring: ScoringModel
    profiles: tuple[AccountProfile, ...]
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def accounts(self) -> tuple[Account, ...]:
        return tuple(p.account for p in self.profiles)

    def rng(self, purpose: str) -> random.Random:
        """An independent, deterministic random stream for one purpose (e.g. one vendor).

        A month of a timeline (:mod:`health_score_sandbox.timeline`) draws its own streams.
        """
        month = self.extra.get("slice")
        key = f"{self.seed}:{purpose}" if month is None else f"{self.seed}:{purpose}:month{month}"
        digest = hashlib.sha256(key.encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def mapping_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(MAPPING_COLUMNS)
        for a in self.accounts:
            writer.writerow(
                [
                    a.sf_account_id or "",
                    a.intercom_company_id or "",
                    a.looker_customer_id or "",
                    a.account_name,
                    a.segment,
                    a.jira_project_key or "",
                    a.jira_component or "",
                ]
            )
        return out.getvalue()

    def write_mapping(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.mapping_csv(), encoding="utf-8")
        return path


def _signals(rng: random.Random, health: float) -> tuple[tuple[str, str, str], ...]:
    """About 10% of accounts carry churn signals, more often the unhealthy ones."""
    chance = 0.04 if health >= 76 else (0.12 if health >= 60 else 0.25)
    if rng.random() >= chance:
        return ()
    out = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        severity = rng.choices(("Critical", "Moderate", "Watch"), (0.35, 0.4, 0.25))[0]
        confidence = rng.choice(("Confirmed", "Suspected"))
        status = rng.choices(("Active", "Monitoring"), (0.7, 0.3))[0]
        out.append((severity, confidence, status))
    return tuple(out)


def build_portfolio(
    accounts: int = DEFAULT_ACCOUNTS,
    *,
    seed: int = DEFAULT_SEED,
    as_of: date = date(2026, 11, 1),
    config_dir: Path = DEFAULT_CONFIG_DIR,
) -> Portfolio:
    """Generate ``accounts`` synthetic accounts, deterministically for ``seed``."""
    scoring = load_scoring_model(config_dir)
    rng = random.Random(seed)
    segments = sorted(scoring.segments)
    paid = "paid" if "paid" in segments else segments[0]
    others = [s for s in segments if s != paid] or [paid]
    profiles: list[AccountProfile] = []
    shares = [m[0] for m in _HEALTH_MIX]
    for index in range(accounts):
        # The first accounts walk through every band so even tiny portfolios have each tier.
        band_index = index if index < len(_HEALTH_MIX) else rng.choices(range(4), shares)[0]
        _, low, high = _HEALTH_MIX[band_index]
        health = rng.uniform(low, high)
        segment = paid if rng.random() < 0.4 else rng.choice(others)
        name = f"{rng.choice(_NAME_A)} {rng.choice(_NAME_B)} {index + 1:05d}"
        present = frozenset(s for s in SOURCES if rng.random() >= 0.10)
        # Mapped-but-empty vs not mapped at all: half of the absent accounts keep their id.
        keep_id = {s: (s in present) or rng.random() < 0.5 for s in SOURCES}
        no_salesforce_row = index >= len(_HEALTH_MIX) and rng.random() < 0.02
        sf_id = None if no_salesforce_row else salesforce_id("001Sb", index + 1)
        account_id = sf_id or f"intercom:cmp_{index + 1:06d}"
        account = Account(
            account_id=account_id,
            account_name=name,
            segment=segment,
            sf_account_id=sf_id,
            intercom_company_id=f"cmp_{index + 1:06d}"
            if keep_id["intercom"] or sf_id is None
            else None,
            looker_customer_id=f"C{index + 1:06d}" if keep_id["looker"] else None,
            jira_project_key="SUP" if keep_id["jira"] else None,
            jira_component=f"cust-{index + 1:05d}" if keep_id["jira"] else None,
        )
        targets: dict[str, float] = {}
        for metric in scoring.metrics.values():
            score = health + rng.gauss(0, 12)
            targets[metric.name] = target_raw(metric.bands[segment], metric.lower_is_better, score)
        signals = _signals(rng, health)
        profiles.append(AccountProfile(account, health, present, targets, signals))
    return Portfolio(seed=seed, as_of=as_of, scoring=scoring, profiles=tuple(profiles))


def expected_signal_counts(profile: AccountProfile) -> dict[str, int]:
    """Signal counts as the pipeline should derive them (Monitoring counts one severity lower)."""
    counts = {
        "critical": 0,
        "moderate": 0,
        "watch": 0,
        "critical_confirmed": 0,
        "moderate_confirmed": 0,
        "watch_confirmed": 0,
    }
    lower = {"Critical": "moderate", "Moderate": "watch", "Watch": None}
    for severity, confidence, status in profile.churn_signals:
        level: str | None = severity.lower() if status == "Active" else lower[severity]
        if level is None:
            continue
        counts[level] += 1
        if confidence == "Confirmed":
            counts[f"{level}_confirmed"] += 1
    return counts
