"""What the stand-ins read from a config folder, parsed here from the files themselves.

The folder's formats (``weights.yaml``, ``thresholds.yaml``, ``sources.yaml``,
``account_mapping.csv``) are documented and public; the stand-ins read the few keys they need and
ignore the rest. Each vendor module declares its own small settings dataclass for its section of
``sources.yaml``; :func:`read_settings` fills one from a parsed YAML mapping, or from any object
exposing the same keys as attributes (so a test can hand a stand-in the very settings object it
gives an extractor).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import yaml

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
WEIGHTS_FILE = "weights.yaml"
THRESHOLDS_FILE = "thresholds.yaml"
SOURCES_FILE = "sources.yaml"

#: The weights.yaml section naming the churn-risk dimensions, and the dimension outside it.
CHURN_RISK = "churn_risk"
PLATFORM_VALUE = "platform_value"
#: Keys of a metric's thresholds entry that are not segments.
METRIC_META_KEYS = frozenset({"lower_is_better", "description", "unit", "source"})

#: A ``sources.yaml`` section as a stand-in is given it: its own settings dataclass, the mapping
#: parsed from YAML, or any object with the same keys as attributes.
SectionLike: TypeAlias = object

_Settings = TypeVar("_Settings", bound="DataclassInstance")


def read_yaml(path: Path) -> Any:
    """A YAML file parsed safely (numbers as YAML types them)."""
    return yaml.safe_load(path.read_text(encoding="utf-8-sig"))


def value_of(source: object, name: str) -> object:
    """``source[name]`` for a mapping, else ``source.name``; None when absent."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _convert(given: object, default: object) -> object:
    """``given`` in the type of the field's default."""
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return read_settings(type(default), given)
    if isinstance(default, bool):
        return bool(given)
    if isinstance(default, int):
        return int(str(given))
    if isinstance(default, Decimal):
        return Decimal(str(given))
    if isinstance(default, tuple):
        if isinstance(given, str):
            return (given,)
        if not isinstance(given, list | tuple | set | frozenset):
            raise TypeError(f"expected a list, got {given!r}")
        return tuple(str(item) for item in given)
    return str(given)  # str fields, and optional ones (default None)


def read_settings(cls: type[_Settings], source: SectionLike) -> _Settings:
    """A settings dataclass from ``source``: each field read by name, its default when absent.

    Unknown keys are ignored; a nested dataclass field reads the nested section the same way.
    """
    if isinstance(source, cls):
        return source
    values: dict[str, object] = {}
    for spec in dataclasses.fields(cls):
        if spec.default is not dataclasses.MISSING:
            default: object = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{spec.name} needs a default")
        given = value_of(source, spec.name)
        if given is None:
            values[spec.name] = default
        elif given == "" and default is None:
            values[spec.name] = None
        else:
            values[spec.name] = _convert(given, default)
    return cls(**values)


def source_section(config_dir: Path, name: str) -> Mapping[str, Any]:
    """One vendor's section of ``sources.yaml`` (empty when the file or section is absent)."""
    path = config_dir / SOURCES_FILE
    document = read_yaml(path) if path.is_file() else None
    section = document.get(name) if isinstance(document, Mapping) else None
    return section if isinstance(section, Mapping) else {}


# --------------------------------------------------------------------------------------------
# The scoring model, as far as generation needs it: metrics, directions, per-segment bands


@dataclass(frozen=True, slots=True)
class Band:
    """One segment's thresholds of a metric."""

    green: Decimal
    yellow: Decimal
    red: Decimal


@dataclass(frozen=True, slots=True)
class MetricModel:
    name: str
    lower_is_better: bool
    bands: Mapping[str, Band]  # segment → thresholds


@dataclass(frozen=True, slots=True)
class ScoringModel:
    """Every distinct metric of the scoring config (in config order) and the segments."""

    metrics: Mapping[str, MetricModel]
    segments: frozenset[str]


def _number(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"expected a number, got {value!r}")
    return Decimal(str(value))


def load_scoring_model(config_dir: Path = DEFAULT_CONFIG_DIR) -> ScoringModel:
    """Metrics, directions and bands from ``weights.yaml`` and ``thresholds.yaml``.

    Dimensions are those weighted under ``churn_risk`` plus ``platform_value``; a dimension's
    metrics are those it weights, in order; a metric in two dimensions keeps its first entry.
    """
    weights = read_yaml(config_dir / WEIGHTS_FILE) or {}
    thresholds = read_yaml(config_dir / THRESHOLDS_FILE) or {}
    dimensions = [*(weights.get(CHURN_RISK) or {}), PLATFORM_VALUE]
    segments: set[str] = set()
    for dimension in dimensions:
        for entry in (thresholds.get(dimension) or {}).values():
            if isinstance(entry, Mapping):
                segments.update(str(k) for k in entry if k not in METRIC_META_KEYS)
    metrics: dict[str, MetricModel] = {}
    for dimension in dimensions:
        entries = thresholds.get(dimension) or {}
        for name in weights.get(dimension) or {}:
            entry = entries.get(name)
            if name in metrics or not isinstance(entry, Mapping):
                continue
            bands = {
                segment: Band(*(_number(entry[segment][k]) for k in ("green", "yellow", "red")))
                for segment in sorted(segments)
                if isinstance(entry.get(segment), Mapping)
            }
            metrics[str(name)] = MetricModel(str(name), bool(entry.get("lower_is_better")), bands)
    return ScoringModel(metrics=metrics, segments=frozenset(segments))
