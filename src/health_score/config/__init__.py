"""Configuration: load, validate and type the config folder.

Every problem is collected and reported at once, each naming its file and key path (and line for
CSV), so an operator fixes the whole folder in one pass. Numbers are read as ``Decimal`` from the
literals as written in YAML, never through binary floats.

``sources.yaml`` is read here as data only: a mapping with one section (itself a mapping) per
known source. What each section means belongs to that source, so the typed per-vendor parsing
is :func:`health_score.sources.registry.parse_sources`, one layer up; this package imports
nothing from ``health_score.sources`` or ``health_score.loaders``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import yaml

from health_score.numbers import parse_decimal
from health_score.numbers import to_decimal as to_decimal  # re-exported: config callers use it
from health_score.records import Account
from health_score.salesforce_ids import id_hint as salesforce_id_hint
from health_score.salesforce_ids import id_problem as salesforce_id_problem
from health_score.scoring.spec import (
    CHURN_RISK,
    DEFAULT_MIN_COVERAGE_PCT,
    PLATFORM_VALUE,
    Band,
    CapRule,
    DimensionSpec,
    MetricSpec,
    ScoringConfig,
    Tier,
    ValidityFloors,
)

WEIGHTS_FILE = "weights.yaml"
THRESHOLDS_FILE = "thresholds.yaml"
SOURCES_FILE = "sources.yaml"
MAPPING_FILE = "account_mapping.csv"
#: The folder's files, in the order the manifest's ``config_sha256`` hashes them.
CONFIG_FILES = (WEIGHTS_FILE, THRESHOLDS_FILE, SOURCES_FILE, MAPPING_FILE)

#: The sources, in the order runs report them; each has one section in sources.yaml.
SOURCE_NAMES = ("intercom", "jira", "looker", "salesforce")
#: sources.yaml's other top-level sections: the Salesforce write-back (the loader's settings) and
#: the limits of a whole run (:mod:`health_score.deadline`).
WRITEBACK_SECTION = "writeback"
RUN_SECTION = "run"
SOURCES_FILE_SECTIONS = (*SOURCE_NAMES, WRITEBACK_SECTION, RUN_SECTION)

HEALTH_SCORE = "health_score"
COMPONENT_KEYS = {"churn_risk_weight": CHURN_RISK, "platform_value_weight": PLATFORM_VALUE}
#: How far a weight group's sum may be from 1: the original system's tolerance. Any sum that is
#: not exactly 1 is accepted with a warning (the weights are used in proportion: every weighted
#: mean divides by the weights it used); further than this is a config error.
WEIGHT_TOLERANCE = Decimal("0.01")

#: Keys inside a metric's thresholds entry that are not segments.
METRIC_META_KEYS = frozenset({"lower_is_better", "description", "unit", "source"})

MAPPING_COLUMNS = (
    "sf_account_id",
    "intercom_company_id",
    "looker_customer_id",
    "account_name",
    "segment",
    "jira_project_key",
    "jira_component",
)

JIRA_PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,19}")
# Ids from other systems: printable, no quotes or backslashes that could escape a query literal,
# bounded length. Extractors still escape; this refuses obvious garbage early.
SAFE_TEXT = re.compile(r"[^\x00-\x1f\x7f'\"\\]{1,255}")
# An account name is only ever shown (files, dashboard, the write-back's record name), never put
# in a query, so any printable text is fine ("Mollie's", "Villa D'Este", "Café \"Zürich\"").
NAME_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
#: ID columns of the mapping that are checked against SAFE_TEXT.
SAFE_ID_COLUMNS = ("intercom_company_id", "looker_customer_id", "jira_component")

#: The most characters of one value an error message quotes.
SHOWN_LIMIT = 200
#: The most problems of one file an error message lists (all stay in ``ConfigError.problems``).
LISTED_PER_FILE = 20


# --------------------------------------------------------------------------------------------
# Errors


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``repr(value)`` for a message, quoting at most ``limit`` characters of it.

    A 10 kB account name pasted into a cell must not become a 10 kB error message (or log line).
    """
    if isinstance(value, str):
        return (
            repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} characters)"
        )
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One configuration problem and where it is."""

    file: str
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.location}" if self.location else self.file
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found, never just the first."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        listed: dict[str, int] = {}
        lines: list[str] = []
        for problem in self.problems:
            count = listed[problem.file] = listed.get(problem.file, 0) + 1
            if count <= LISTED_PER_FILE:
                lines.append(f"  - {problem}")
        for file, count in listed.items():
            if count > LISTED_PER_FILE:
                lines.append(
                    f"  - {file}: … and {count - LISTED_PER_FILE} more problem(s) "
                    f"(the first {LISTED_PER_FILE} are listed)"
                )
        text = "\n".join(lines)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{text}")


#: Reports one problem: (key path, message).
AddProblem = Callable[[str, str], None]


class Problems:
    """Collects problems for one file (and, given a ``notes`` list, its warnings)."""

    def __init__(
        self, file: str, sink: list[ConfigProblem], notes: list[ConfigProblem] | None = None
    ) -> None:
        self.file = file
        self.sink = sink
        self.notes = notes

    def add(self, location: str, message: str) -> None:
        self.sink.append(ConfigProblem(self.file, location, message))

    def warn(self, location: str, message: str) -> None:
        """Something accepted but worth saying; dropped when nobody collects warnings."""
        if self.notes is not None:
            self.notes.append(ConfigProblem(self.file, location, message))


_Problems = Problems  # the former name


# --------------------------------------------------------------------------------------------
# YAML with exact decimals


class _DecimalLoader(yaml.SafeLoader):
    """A safe loader that keeps floats as the Decimal literal written in the file and refuses
    a key given twice in one mapping (YAML would silently keep the last one)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Refuse aliases (``*name``): config files need none, and nested ones can expand a
        few hundred bytes into gigabytes ("billion laughs")."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in config files", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {shown(str(key), 80)} (first given at line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal | str:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    value = parse_decimal(text.replace("_", ""))
    # .inf / .nan: let validation report "not a finite number"
    return value if value is not None and value.is_finite() else text


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """A config folder's files, each read exactly once: the bytes that are parsed are the bytes
    that are hashed into the manifest and copied into the run folder."""

    directory: Path
    names: tuple[str, ...]  # in hashing order
    contents: Mapping[str, bytes]  # the files that could be read
    unreadable: Mapping[str, str] = field(default_factory=dict)  # name → why (not "missing")

    def sha256(self, names: Iterable[str] | None = None) -> str:
        """Hash of ``names`` (default: all) as ``name NUL bytes NUL`` each; absent ones skipped."""
        digest = hashlib.sha256()
        for name in self.names if names is None else names:
            data = self.contents.get(name)
            if data is not None:
                digest.update(name.encode() + b"\0" + data + b"\0")
        return digest.hexdigest()

    def only(self, names: Iterable[str]) -> dict[str, bytes]:
        return {n: self.contents[n] for n in names if n in self.contents}


def read_config_files(directory: Path, names: Sequence[str] = CONFIG_FILES) -> ConfigFiles:
    """Read each of ``names`` from ``directory`` once (an absent file is simply not there)."""
    contents: dict[str, bytes] = {}
    unreadable: dict[str, str] = {}
    for name in names:
        try:
            contents[name] = (directory / name).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            unreadable[name] = str(exc)
    return ConfigFiles(directory, tuple(names), contents, unreadable)


def parse_yaml(files: ConfigFiles, name: str, problems: Problems) -> Any:
    """Parse one of ``files``; a missing file or a syntax error becomes a problem."""
    if name in files.unreadable:
        problems.add("", f"cannot read file: {files.unreadable[name]}")
        return None
    data = files.contents.get(name)
    if data is None:
        problems.add("", f"file not found (looked in {files.directory})")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add("", f"cannot read file: {exc}")
        return None
    return _parse_yaml_text(text, problems)


def load_yaml(path: Path, problems: Problems) -> Any:
    """Read and parse one YAML file; a syntax error becomes a problem naming the line."""
    return parse_yaml(read_config_files(path.parent, (path.name,)), path.name, problems)


def _parse_yaml_text(text: str, problems: Problems) -> Any:
    try:
        return yaml.load(text, Loader=_DecimalLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else ""
        problems.add(line, f"invalid YAML: {getattr(exc, 'problem', exc)}")
        return None


# --------------------------------------------------------------------------------------------
# Typed configuration


#: sources.yaml as data: source name → its section's keys and values (an absent section is {}).
SourceSections = Mapping[str, Mapping[str, object]]

#: What ``AppConfig.sources`` holds: the sections as data here; the sources layer's
#: ``load_run_config`` gives the typed ``SourceSettings``.
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class AppConfig(Generic[S]):
    """The whole config folder."""

    directory: Path
    scoring: ScoringConfig
    accounts: tuple[Account, ...]
    sources: S
    sha256: str = ""
    #: The files as read (name → bytes): what the run folder's ``config/`` receives.
    files: Mapping[str, bytes] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# weights.yaml + thresholds.yaml


def _check_group(
    problems: Problems, location: str, raw: object, *, expect_keys: Iterable[str] | None = None
) -> dict[str, Decimal]:
    """Validate one weight group: a mapping of name → non-negative number summing to 1."""
    if not isinstance(raw, Mapping):
        problems.add(location, f"expected a mapping of name → weight, got {type(raw).__name__}")
        return {}
    weights: dict[str, Decimal] = {}
    for key, value in raw.items():
        number = to_decimal(value)
        if number is None:
            problems.add(f"{location}.{key}", f"weight must be a number, got {shown(value)}")
            continue
        if number < 0:
            problems.add(f"{location}.{key}", f"weight must be ≥ 0, got {number}")
        weights[str(key)] = number
    if expect_keys is not None:
        expected = list(expect_keys)
        for key in expected:
            if key not in raw:
                problems.add(f"{location}.{key}", "missing weight")
        for key in raw:
            if key not in expected:
                problems.add(f"{location}.{key}", f"unknown key (expected one of {expected})")
    if weights and len(weights) == len(raw):
        total = sum(weights.values(), Decimal(0))
        if abs(total - 1) > WEIGHT_TOLERANCE:
            problems.add(location, f"weights must sum to 1 (±{WEIGHT_TOLERANCE}), got {total}")
        elif total != 1:
            problems.warn(
                location,
                f"weights sum to {total}, not 1: accepted (within the original system's "
                f"±{WEIGHT_TOLERANCE}) and used in proportion, as if scaled to sum to 1",
            )
    return weights


def _parse_band(
    problems: Problems, location: str, raw: object, lower_is_better: bool
) -> Band | None:
    if not isinstance(raw, Mapping):
        problems.add(location, "expected a mapping with green, yellow and red")
        return None
    values: dict[str, Decimal] = {}
    for key in ("green", "yellow", "red"):
        if key not in raw:
            problems.add(f"{location}.{key}", "missing threshold")
            continue
        number = to_decimal(raw[key])
        if number is None:
            problems.add(f"{location}.{key}", f"threshold must be a number, got {shown(raw[key])}")
            continue
        values[key] = number
    for key in raw:
        if key not in ("green", "yellow", "red"):
            problems.add(f"{location}.{key}", "unknown key (expected green, yellow, red)")
    if len(values) != 3:
        return None
    band = Band(values["green"], values["yellow"], values["red"])
    if lower_is_better and not band.green <= band.yellow <= band.red:
        problems.add(
            location,
            f"thresholds out of order for lower_is_better: true (need green ≤ yellow ≤ red, got "
            f"{band.green}, {band.yellow}, {band.red})",
        )
    if not lower_is_better and not band.green >= band.yellow >= band.red:
        problems.add(
            location,
            f"thresholds out of order for lower_is_better: false (need green ≥ yellow ≥ red, got "
            f"{band.green}, {band.yellow}, {band.red})",
        )
    return band


def _tier_label(key: str) -> str:
    return " ".join(part.capitalize() for part in key.split("_"))


def _parse_tiers(problems: Problems, raw: object) -> tuple[Tier, ...]:
    if not isinstance(raw, Mapping) or not raw:
        problems.add("tiers", "expected a mapping of tier → {min: …}")
        return ()
    tiers: list[Tier] = []
    for key, spec in raw.items():
        loc = f"tiers.{key}"
        if not isinstance(spec, Mapping) or "min" not in spec:
            problems.add(loc, "expected {min: N} (max is optional)")
            continue
        minimum = to_decimal(spec["min"])
        if minimum is None or not 0 <= minimum <= 100:
            problems.add(f"{loc}.min", f"must be a number in 0–100, got {shown(spec['min'])}")
            continue
        for extra in spec:
            if extra not in ("min", "max", "label"):
                problems.add(f"{loc}.{extra}", "unknown key (expected min, max, label)")
        label = str(spec.get("label") or _tier_label(str(key)))
        tiers.append(Tier(str(key), label, minimum))
    mins = [t.min for t in tiers]
    for value in sorted({m for m in mins if mins.count(m) > 1}):
        names = [t.key for t in tiers if t.min == value]
        problems.add("tiers", f"duplicate min {value} in tiers {names}")
    if tiers and min(mins) != 0:
        problems.add("tiers", f"no tier starts at 0 (lowest min is {min(mins)}); add a 0 floor")
    return tuple(sorted(tiers, key=lambda t: t.min, reverse=True))


_CONDITION = re.compile(
    r"(?P<severity>critical|moderate|watch)(?P<confirmed>_confirmed)?(?:_(?P<count>\d+)(?:plus)?)?"
)
SEVERITIES = ("critical", "moderate", "watch")


def parse_condition(condition: str) -> tuple[str, int, bool] | None:
    """``critical_confirmed`` → (critical, 1, True); ``moderate_3plus`` → (moderate, 3, False).

    The grammar is ``<severity>[_confirmed][_<N>[plus]]``: at least N signals of that severity
    (N defaults to 1; ``critical_1`` means "1 or more", as in the original configuration).
    """
    match = _CONDITION.fullmatch(condition.strip().lower())
    if match is None:
        return None
    count = int(match["count"]) if match["count"] else 1
    if count < 1:
        return None
    return match["severity"], count, bool(match["confirmed"])


#: validity floors: key → (lowest, highest) allowed value.
VALIDITY_FLOORS = {
    "min_auc": (0.0, 1.0),
    "min_red_lift": (0.0, 1000.0),
    "min_churner_capture_pct": (0.0, 100.0),
    "max_green_share_pct": (0.0, 100.0),
}


def _parse_validity(problems: Problems, raw: object) -> ValidityFloors:
    """``validity:`` — the backtest's floors (health-score backtest exits 1 when one is missed)."""
    if raw is None:
        return ValidityFloors()
    if not isinstance(raw, Mapping):
        problems.add("validity", "expected a mapping such as {min_auc: 0.65, min_red_lift: 2}")
        return ValidityFloors()
    values: dict[str, Any] = {}
    known = [*VALIDITY_FLOORS, "min_events"]
    for key, value in raw.items():
        loc = f"validity.{key}"
        if key == "min_events":
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                problems.add(loc, f"expected a whole number ≥ 2, got {shown(value)}")
                continue
            values[key] = value
            continue
        if key not in VALIDITY_FLOORS:
            problems.add(loc, f"unknown floor (expected one of {', '.join(known)})")
            continue
        low, high = VALIDITY_FLOORS[key]
        number = not isinstance(value, bool) and isinstance(value, int | float | Decimal)
        if not number or not low <= value <= high:
            got = str(value) if isinstance(value, Decimal) else shown(value)
            problems.add(loc, f"expected a number in {low:g}–{high:g}, got {got}")
            continue
        values[key] = float(value)
    return ValidityFloors(**values)


def _parse_rules(problems: Problems, raw: object) -> tuple[CapRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not isinstance(raw.get("rules", []), list):
        problems.add("qualitative_modifier", "expected {rules: [ {condition, value}, … ]}")
        return ()
    rules: list[CapRule] = []
    for index, spec in enumerate(raw.get("rules") or []):
        loc = f"qualitative_modifier.rules[{index}]"
        if not isinstance(spec, Mapping):
            problems.add(loc, "expected a mapping with condition and value")
            continue
        condition = spec.get("condition")
        if isinstance(spec.get("severity"), str):  # structured form
            severity = str(spec["severity"]).lower()
            count_raw = spec.get("min_count", 1)
            confirmed = bool(spec.get("confirmed_only", False))
            if severity not in SEVERITIES or not isinstance(count_raw, int) or count_raw < 1:
                problems.add(loc, f"severity must be one of {SEVERITIES} and min_count ≥ 1")
                continue
            parsed: tuple[str, int, bool] | None = (severity, count_raw, confirmed)
            condition = (
                condition or f"{severity}{'_confirmed' if confirmed else ''}_{count_raw}plus"
            )
        else:
            parsed = parse_condition(condition) if isinstance(condition, str) else None
            if parsed is None:
                problems.add(
                    f"{loc}.condition",
                    f"unknown condition {shown(condition)} (expected e.g. critical_confirmed, "
                    "critical_2plus, critical_1, moderate_1plus, moderate_3plus)",
                )
                continue
        action = spec.get("action", "cap")
        if action not in ("cap", "set"):
            problems.add(f"{loc}.action", f"expected cap or set, got {shown(action)}")
        value = to_decimal(spec.get("value"))
        if value is None or not 0 <= value <= 100:
            problems.add(
                f"{loc}.value", f"cap must be a number in 0–100, got {shown(spec.get('value'))}"
            )
            continue
        assert parsed is not None
        severity, count, confirmed = parsed
        rules.append(
            CapRule(
                str(condition), severity, count, confirmed, value, str(spec.get("description", ""))
            )
        )
    return tuple(rules)


def threshold_segments(thresholds_raw: object, sections: Iterable[str]) -> frozenset[str]:
    """The segments thresholds.yaml names under the given dimension sections."""
    segments: set[str] = set()
    if not isinstance(thresholds_raw, Mapping):
        return frozenset()
    for section in sections:
        metrics_raw = thresholds_raw.get(section)
        if isinstance(metrics_raw, Mapping):
            for spec in metrics_raw.values():
                if isinstance(spec, Mapping):
                    segments.update(str(k) for k in spec if k not in METRIC_META_KEYS)
    return frozenset(segments)


def parse_scoring(
    weights_raw: object, thresholds_raw: object, problems: list[ConfigProblem]
) -> ScoringConfig | None:
    """Build the scoring config from the two parsed YAML documents, collecting problems."""
    notes: list[ConfigProblem] = []
    wp = Problems(WEIGHTS_FILE, problems, notes)
    tp = Problems(THRESHOLDS_FILE, problems, notes)
    before = len(problems)
    for where, raw, what in (
        (wp, weights_raw, "health_score, churn_risk and one section of weights per dimension"),
        (tp, thresholds_raw, "one section of thresholds per dimension, and tiers"),
    ):
        if raw is None:
            where.add("", f"the file is empty (or only comments): it must hold {what}")
        elif not isinstance(raw, Mapping):
            where.add("", f"expected a mapping at the top level, got {type(raw).__name__}")
    if not isinstance(weights_raw, Mapping) or not isinstance(thresholds_raw, Mapping):
        return None  # nothing more to say that would not follow from the message above

    for section in (HEALTH_SCORE, CHURN_RISK):
        if section not in weights_raw:
            wp.add(section, "missing section")
    components_raw = weights_raw.get(HEALTH_SCORE, {})
    component_weights = _check_group(wp, HEALTH_SCORE, components_raw, expect_keys=COMPONENT_KEYS)
    components = {COMPONENT_KEYS[k]: v for k, v in component_weights.items() if k in COMPONENT_KEYS}
    churn_weights = _check_group(wp, CHURN_RISK, weights_raw.get(CHURN_RISK, {}))

    dimension_names = [*churn_weights, PLATFORM_VALUE]
    known_weight_sections = {HEALTH_SCORE, CHURN_RISK, *dimension_names}
    for section in weights_raw:
        if section not in known_weight_sections:
            wp.add(str(section), f"unknown section (dimensions are {dimension_names})")
    known_threshold_sections = {
        "tiers",
        "qualitative_modifier",
        "min_coverage_pct",
        "validity",
        *dimension_names,
    }
    for section in thresholds_raw:
        if section not in known_threshold_sections:
            tp.add(str(section), f"unknown section (dimensions are {dimension_names})")

    segments = set(threshold_segments(thresholds_raw, dimension_names))

    dimensions: dict[str, DimensionSpec] = {}
    for dim in dimension_names:
        if dim not in weights_raw:
            wp.add(dim, "missing section")
            continue
        if dim not in thresholds_raw:
            tp.add(dim, "missing section")
            continue
        metric_weights = _check_group(wp, dim, weights_raw[dim])
        metric_thresholds = thresholds_raw[dim]
        if not isinstance(metric_thresholds, Mapping):
            tp.add(dim, "expected a mapping of metric → thresholds")
            continue
        metrics: list[MetricSpec] = []
        for name, weight in metric_weights.items():
            spec = metric_thresholds.get(name)
            if spec is None:
                tp.add(f"{dim}.{name}", f"metric has a weight in {WEIGHTS_FILE} but no thresholds")
                continue
            if not isinstance(spec, Mapping):
                tp.add(f"{dim}.{name}", "expected lower_is_better and one entry per segment")
                continue
            lib = spec.get("lower_is_better")
            if not isinstance(lib, bool):
                tp.add(f"{dim}.{name}.lower_is_better", f"expected true or false, got {shown(lib)}")
                continue
            bands: dict[str, Band] = {}
            for segment in sorted(segments):
                if segment not in spec:
                    tp.add(f"{dim}.{name}.{segment}", "segment missing for this metric")
                    continue
                band = _parse_band(tp, f"{dim}.{name}.{segment}", spec[segment], lib)
                if band is not None:
                    bands[segment] = band
            metrics.append(
                MetricSpec(
                    name, weight, lib, MappingProxyType(bands), str(spec.get("description", ""))
                )
            )
        for name in metric_thresholds:
            if name not in metric_weights:
                tp.add(f"{dim}.{name}", f"metric has thresholds but no weight in {WEIGHTS_FILE}")
        dimensions[dim] = DimensionSpec(dim, tuple(metrics))

    tiers = _parse_tiers(tp, thresholds_raw.get("tiers"))
    rules = _parse_rules(tp, thresholds_raw.get("qualitative_modifier"))
    coverage_raw = thresholds_raw.get("min_coverage_pct", DEFAULT_MIN_COVERAGE_PCT)
    min_coverage = to_decimal(coverage_raw)
    if min_coverage is None or not 0 <= min_coverage <= 100:
        tp.add("min_coverage_pct", f"must be a number in 0–100, got {shown(coverage_raw)}")
        min_coverage = DEFAULT_MIN_COVERAGE_PCT

    validity = _parse_validity(tp, thresholds_raw.get("validity"))

    if len(problems) > before:
        return None
    return ScoringConfig(
        component_weights=MappingProxyType(components),
        churn_risk_weights=MappingProxyType(churn_weights),
        dimensions=MappingProxyType(dimensions),
        tiers=tiers,
        cap_rules=rules,
        min_coverage_pct=min_coverage,
        segments=frozenset(segments),
        validity=validity,
        warnings=tuple(f"config: {note}" for note in notes),
    )


# --------------------------------------------------------------------------------------------
# account_mapping.csv


#: The csv module's limit on one cell (its default ``field_size_limit``), in characters.
CSV_FIELD_LIMIT = 131072


def csv_records(text: str, problems: Problems) -> Iterator[tuple[int, list[str]]]:
    """Yield (line where the record starts, cells) for every record of a CSV text, header first.

    Quoting is read strictly, so a quote that is opened and never closed is reported at the line
    of the record that opened it — not at the end of the file, which is where a lenient reader
    notices, after swallowing every later line into one cell. A cell over the csv module's field
    limit is reported at its record's line too. Either stops the reading (what follows cannot be
    told apart from the broken cell); blank lines come out as empty records.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(f"line {start}", _csv_problem(str(exc)))
            return
        yield start, cells
        start = reader.line_num + 1


def _csv_problem(error: str) -> str:
    if "field larger than field limit" in error:
        return (
            f"a cell of the record starting on this line is over {CSV_FIELD_LIMIT:,} characters "
            "(a missing closing quote, or a file that is not this CSV?); the file is not read "
            "further"
        )
    return (
        "a quoted cell starts in the record on this line and its quotes do not add up: a "
        'closing " is missing, or a " inside a quoted cell is not doubled (""); the file is '
        f"not read further (csv: {error})"
    )


def read_csv_rows(
    text: str, problems: Problems, required: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) for each non-blank data row; a missing column is one problem."""
    records = csv_records(text, problems)
    header = [h.strip() for h in next(records, (1, []))[1]]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        problems.add(
            "line 1", f"duplicate column(s) {shown(duplicated)}: each column may appear once"
        )
        return
    missing = [c for c in required if c not in header]
    if missing:
        problems.add("line 1", f"missing required column(s) {missing} (header is {shown(header)})")
        return
    for line, cells in records:
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        if len(cells) != len(header):
            more_or_fewer = "more" if len(cells) > len(header) else "fewer"
            problems.add(
                f"line {line}",
                f"{len(cells)} cells, {more_or_fewer} than the header's {len(header)} columns "
                "(a stray or missing comma?); the row is not used",
            )
            continue
        yield line, {k: v.strip() for k, v in zip(header, cells, strict=True)}


def derive_account_id(row: Mapping[str, str]) -> str | None:
    """The pipeline key: the Salesforce id, else a prefixed id from another system."""
    if row.get("sf_account_id"):
        return row["sf_account_id"]
    if row.get("intercom_company_id"):
        return f"intercom:{row['intercom_company_id']}"
    if row.get("looker_customer_id"):
        return f"looker:{row['looker_customer_id']}"
    if row.get("jira_component"):
        return f"jira:{row.get('jira_project_key', '')}/{row['jira_component']}"
    return None


def parse_mapping(
    text: str,
    segments: frozenset[str] | None,
    problems: list[ConfigProblem],
    file: str = MAPPING_FILE,
) -> tuple[Account, ...]:
    """Parse and validate the account mapping CSV."""
    mp = Problems(file, problems)
    accounts: list[Account] = []
    seen_sf: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    for line, row in read_csv_rows(text, mp, MAPPING_COLUMNS):
        loc = f"line {line}"
        ok = True
        sf_id = row.get("sf_account_id", "")
        if sf_id:
            id_problem = salesforce_id_problem(sf_id)
            if id_problem is not None:
                hint = salesforce_id_hint(sf_id)
                mp.add(
                    loc,
                    f"sf_account_id {shown(sf_id)} is not a 15- or 18-character Salesforce id "
                    f"({id_problem})" + (f"; {hint}" if hint else ""),
                )
                ok = False
            else:
                key15 = sf_id[:15]
                if key15 in seen_sf:
                    mp.add(loc, f"sf_account_id {shown(sf_id)} duplicates line {seen_sf[key15]}")
                    ok = False
                else:
                    seen_sf[key15] = line
        project = row.get("jira_project_key", "")
        if project and not JIRA_PROJECT_KEY.fullmatch(project):
            mp.add(
                loc,
                f"jira_project_key {shown(project)} is not a Jira project key "
                "(uppercase letters, digits, underscore)",
            )
            ok = False
        for column in SAFE_ID_COLUMNS:
            value = row.get(column, "")
            if value and not SAFE_TEXT.fullmatch(value):
                mp.add(
                    loc,
                    f"{column} {shown(value)} contains quotes, backslashes or control "
                    "characters, or is over 255 characters",
                )
                ok = False
        name = row.get("account_name", "")
        if name and not NAME_TEXT.fullmatch(name):
            mp.add(
                loc,
                f"account_name {shown(name)} contains control characters (tabs, line breaks) "
                "or is over 255 characters",
            )
            ok = False
        if row.get("jira_component") and not project:
            mp.add(loc, "jira_component is set but jira_project_key is empty")
            ok = False
        segment = row.get("segment", "")
        if segments is not None and segment not in segments:
            # The original system matched segments in any letter case ("Paid", "STANDARD").
            spelled = {known.casefold(): known for known in segments}
            if segment.casefold() in spelled:
                segment = spelled[segment.casefold()]
            else:
                mp.add(
                    loc, f"unknown segment {shown(segment)} (expected one of {sorted(segments)})"
                )
                ok = False
        account_id = derive_account_id(row)
        if account_id is None:
            mp.add(
                loc,
                "row has no id for any system (sf_account_id, intercom_company_id, "
                "looker_customer_id or jira_component)",
            )
            ok = False
        elif account_id in seen_ids and not sf_id:
            mp.add(loc, f"account {shown(account_id)} duplicates line {seen_ids[account_id]}")
            ok = False
        if not ok or account_id is None:
            continue
        seen_ids[account_id] = line
        extra = {k: v for k, v in row.items() if k not in MAPPING_COLUMNS and v}
        accounts.append(
            Account(
                account_id=account_id,
                account_name=row.get("account_name") or account_id,
                segment=segment,
                sf_account_id=sf_id or None,
                intercom_company_id=row.get("intercom_company_id") or None,
                looker_customer_id=row.get("looker_customer_id") or None,
                jira_project_key=project or None,
                jira_component=row.get("jira_component") or None,
                extra=MappingProxyType(extra),
            )
        )
    return tuple(accounts)


# --------------------------------------------------------------------------------------------
# The folder


def config_sha256(directory: Path, names: Sequence[str]) -> str:
    """Hash of the config files that shaped a run (recorded in the manifest)."""
    return read_config_files(directory, names).sha256()


def load_scoring_config(directory: Path) -> ScoringConfig:
    """Load only weights.yaml + thresholds.yaml (all that scoring a raw file needs)."""
    return scoring_from(read_config_files(directory, (WEIGHTS_FILE, THRESHOLDS_FILE)))


def scoring_from(files: ConfigFiles) -> ScoringConfig:
    """The scoring config from weights.yaml + thresholds.yaml as already read."""
    problems: list[ConfigProblem] = []
    weights = parse_yaml(files, WEIGHTS_FILE, Problems(WEIGHTS_FILE, problems))
    thresholds = parse_yaml(files, THRESHOLDS_FILE, Problems(THRESHOLDS_FILE, problems))
    if problems:
        raise ConfigError(problems)
    scoring = parse_scoring(weights, thresholds, problems)
    if problems or scoring is None:
        raise ConfigError(problems)
    return scoring


def source_sections(raw: object, add_problem: AddProblem) -> dict[str, Mapping[str, object]]:
    """sources.yaml as data: each known section (``{}`` when absent or empty).

    Reports a document that is not a mapping, unknown top-level names and sections that are not
    mappings; what is inside a section is checked by the source (or loader) it belongs to.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        add_problem("", "expected a mapping with one section per source")
        return {name: {} for name in SOURCES_FILE_SECTIONS}
    for name in raw:
        if name not in SOURCES_FILE_SECTIONS:
            add_problem(str(name), f"unknown source (expected one of {list(SOURCE_NAMES)})")
    sections: dict[str, Mapping[str, object]] = {}
    for name in SOURCES_FILE_SECTIONS:
        section = raw.get(name)
        if section is None:
            sections[name] = {}
        elif isinstance(section, Mapping):
            sections[name] = {str(key): value for key, value in section.items()}
        else:
            add_problem(name, f"expected a mapping of settings, got {type(section).__name__}")
            sections[name] = {}
    return sections


def read_source_sections(
    files: ConfigFiles, problems: list[ConfigProblem], *, missing_ok: bool = False
) -> dict[str, Mapping[str, object]]:
    """``sources.yaml`` (as read into ``files``) as data, adding its problems to ``problems``.

    With ``missing_ok``, an absent file means every section is empty (takes its defaults).
    """
    where = Problems(SOURCES_FILE, problems)
    absent = SOURCES_FILE not in files.contents and SOURCES_FILE not in files.unreadable
    raw = None if missing_ok and absent else parse_yaml(files, SOURCES_FILE, where)
    return source_sections(raw, where.add)


def load_config(
    directory: Path,
    *,
    need_mapping: bool = True,
    need_sources: bool = True,
    mapping_path: Path | None = None,
    files: ConfigFiles | None = None,
) -> AppConfig[SourceSections]:
    """Load and validate the whole folder; raise ConfigError listing every problem.

    ``mapping_path`` replaces the folder's account_mapping.csv (the demo's sandbox writes its own).
    sources.yaml is checked as data only (see :func:`source_sections`); for the typed settings
    of every source use :func:`health_score.sources.registry.load_run_config`. Each file is
    read once (``files``, when the caller already read them).
    """
    files = files or read_config_files(directory)
    problems: list[ConfigProblem] = []
    weights = parse_yaml(files, WEIGHTS_FILE, Problems(WEIGHTS_FILE, problems))
    thresholds = parse_yaml(files, THRESHOLDS_FILE, Problems(THRESHOLDS_FILE, problems))
    scoring = None
    if not problems:  # both files read and valid YAML (an empty one is reported as such)
        scoring = parse_scoring(weights, thresholds, problems)

    sources: SourceSections = {}
    if need_sources:
        sources = read_source_sections(files, problems)

    accounts: tuple[Account, ...] = ()
    if need_mapping:
        mp = Problems(MAPPING_FILE if mapping_path is None else str(mapping_path), problems)
        mapping = files  # the demo's own mapping lies outside the folder:
        if mapping_path is not None:
            mapping = read_config_files(mapping_path.parent, (mapping_path.name,))
        text = _mapping_text(mapping, mapping_path.name if mapping_path else MAPPING_FILE, mp)
        if text is not None:
            # With the scoring config broken, segments are checked against what thresholds.yaml
            # names, and not at all when it names none: one typo there gives one message, not
            # one per mapping row.
            segments = scoring.segments if scoring else _known_segments(thresholds)
            accounts = parse_mapping(text, segments, problems, mp.file)
            if not accounts and not any(p.file == mp.file for p in problems):
                mp.add(
                    "",
                    "no accounts: the mapping has a header but no rows. Add one row per "
                    "customer account, or try the built-in demo: health-score run "
                    "--dry-run --demo",
                )

    if problems or scoring is None:
        raise ConfigError(problems)
    return AppConfig(directory, scoring, accounts, sources, files.sha256(), files.contents)


def _known_segments(thresholds_raw: object) -> frozenset[str] | None:
    if not isinstance(thresholds_raw, Mapping):
        return None
    found = threshold_segments(thresholds_raw, [str(k) for k in thresholds_raw])
    return found or None


def _mapping_text(files: ConfigFiles, name: str, problems: Problems) -> str | None:
    if name in files.unreadable:
        problems.add("", f"cannot read file: {files.unreadable[name]}")
        return None
    data = files.contents.get(name)
    if data is None:
        problems.add("", f"file not found (looked in {files.directory})")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add("", f"cannot read file: {exc}")
        return None
