"""The list of sources, their typed ``sources.yaml`` settings and their credential names.

Each source package ``health_score.sources.<name>`` has ``settings`` (``Settings``, a pydantic
model with ``extra="forbid"`` for its section, and ``CREDENTIAL_VARS``, the environment variable
names it reads), ``metrics`` (pure) and ``extractor`` (HTTP, ``from_env``). This module imports
only the settings, so validating sources.yaml never loads the HTTP stack; activation from
credentials is :func:`health_score.sources.extractors.activate`.

:mod:`health_score.config` reads sources.yaml as data; the typed per-vendor parsing is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pydantic

from health_score.config import (
    SOURCE_NAMES,
    SOURCES_FILE,
    WEIGHTS_FILE,
    AddProblem,
    AppConfig,
    ConfigError,
    ConfigFiles,
    ConfigProblem,
    Problems,
    load_config,
    parse_yaml,
    read_config_files,
    source_sections,
)
from health_score.deadline import SECTION as RUN
from health_score.deadline import RunSettings, parse_run
from health_score.loaders.salesforce_settings import SECTION as WRITEBACK
from health_score.loaders.salesforce_settings import WritebackSettings, parse_writeback
from health_score.scoring.spec import ScoringConfig
from health_score.sources.http_policy import HttpSettings
from health_score.sources.intercom import metrics as intercom_metrics
from health_score.sources.intercom import settings as intercom
from health_score.sources.intercom.settings import Settings as IntercomSettings
from health_score.sources.jira import metrics as jira_metrics
from health_score.sources.jira import settings as jira
from health_score.sources.jira.settings import Settings as JiraSettings
from health_score.sources.looker import settings as looker
from health_score.sources.looker.settings import Settings as LookerSettings
from health_score.sources.salesforce import settings as salesforce
from health_score.sources.salesforce.settings import Settings as SalesforceSettings

__all__ = [
    "CREDENTIAL_VARS",
    "SOURCES",
    "HttpSettings",
    "SourceSettings",
    "credential_problems",
    "load_run_config",
    "load_sources",
    "parse_sources",
]

SOURCES = SOURCE_NAMES

_Model = TypeVar("_Model", bound=pydantic.BaseModel)


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """sources.yaml validated: one field per source, and the write-back section.

    Defaults stand where a section is absent.
    """

    intercom: IntercomSettings = field(default_factory=lambda: IntercomSettings.model_validate({}))
    jira: JiraSettings = field(default_factory=lambda: JiraSettings.model_validate({}))
    looker: LookerSettings = field(default_factory=lambda: LookerSettings.model_validate({}))
    salesforce: SalesforceSettings = field(
        default_factory=lambda: SalesforceSettings.model_validate({})
    )
    #: The top-level ``writeback:`` section: the Salesforce loader's settings, not a source's.
    writeback: WritebackSettings = field(
        default_factory=lambda: WritebackSettings.model_validate({})
    )
    #: The top-level ``run:`` section: limits of the whole run (its deadline).
    run: RunSettings = field(default_factory=lambda: RunSettings.model_validate({}))

    def __getitem__(self, name: str) -> pydantic.BaseModel:
        """One section's settings by name (for code that iterates over :data:`SOURCES`)."""
        if name not in (*SOURCES, WRITEBACK, RUN):
            raise KeyError(name)
        section: pydantic.BaseModel = getattr(self, name)
        return section


#: Source → the environment variable names it reads (names only: for messages and masking).
CREDENTIAL_VARS: Mapping[str, tuple[str, ...]] = {
    "intercom": intercom.CREDENTIAL_VARS,
    "jira": jira.CREDENTIAL_VARS,
    "looker": looker.CREDENTIAL_VARS,
    "salesforce": salesforce.CREDENTIAL_VARS,
}


def credential_problems(env: Mapping[str, str]) -> list[str]:
    """Credentials present in ``env`` that cannot work as set (names and hosts, never secrets)."""
    problem = salesforce.client_credentials_problem(env)
    return [problem] if problem else []


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_sources(
    raw: object, add_problem: AddProblem, only: tuple[str, ...] = SOURCES
) -> SourceSettings:
    """Validate sources.yaml (as parsed YAML); report problems as (key path, message).

    Sections not in ``only`` are neither read nor checked, and neither is a section that has
    problems: they hold their defaults (a caller raises when any problem was reported).
    """
    sections = source_sections(raw, add_problem)

    def section(name: str, model: type[_Model]) -> _Model:
        if name in only:
            try:
                return model.model_validate(sections[name])
            except pydantic.ValidationError as exc:
                for error in exc.errors():
                    add_problem(f"{name}{_loc(tuple(error['loc']))}", error["msg"])
        return model.model_validate({})

    return SourceSettings(
        intercom=section("intercom", IntercomSettings),
        jira=section("jira", JiraSettings),
        looker=section("looker", LookerSettings),
        salesforce=section("salesforce", SalesforceSettings),
        # Not a source: the Salesforce loader's section, read whatever ``only`` names.
        writeback=parse_writeback(sections[WRITEBACK], add_problem)
        or WritebackSettings.model_validate({}),
        run=parse_run(sections[RUN], add_problem) or RunSettings.model_validate({}),
    )


def load_sources(
    directory: Path,
    only: tuple[str, ...] | None = None,
    *,
    missing_ok: bool = False,
    files: ConfigFiles | None = None,
) -> SourceSettings:
    """The validated ``sources.yaml`` of a config folder (every source, or ``only`` these).

    With ``missing_ok``, an absent file means every section takes its defaults; ``files`` is the
    folder as already read. Raises ConfigError listing every problem, with file and key path.
    """
    files = files or read_config_files(directory, (SOURCES_FILE,))
    problems: list[ConfigProblem] = []
    where = Problems(SOURCES_FILE, problems)
    absent = SOURCES_FILE not in files.contents and SOURCES_FILE not in files.unreadable
    raw = None if missing_ok and absent else parse_yaml(files, SOURCES_FILE, where)
    settings = parse_sources(raw, where.add, only or SOURCES)
    if problems:
        raise ConfigError(problems)
    return settings


def providers(settings: SourceSettings) -> dict[str, tuple[str, ...]]:
    """Metric → the sources that produce it (Looker's metrics are the configured Looks')."""
    produced = {
        "intercom": intercom_metrics.METRICS,
        "jira": jira_metrics.METRICS,
        "looker": (
            *(m for look in settings.looker.looks for m in look.metrics),
            *settings.looker.across_looks,
        ),
        "salesforce": (*salesforce.METRICS, *settings.salesforce.custom_metrics.root),
    }
    found: dict[str, list[str]] = {}
    for source in SOURCES:
        for metric in produced[source]:
            if source not in found.setdefault(metric, []):
                found[metric].append(source)
    return {metric: tuple(names) for metric, names in found.items()}


def check_providers(
    scoring: ScoringConfig, settings: SourceSettings, problems: list[ConfigProblem]
) -> None:
    """Every metric weights.yaml weights (non-zero) must come from exactly one source.

    A metric renamed or dropped in sources.yaml would otherwise be "missing" for every account
    and silently hand its weight to the others.
    """
    where = Problems(WEIGHTS_FILE, problems)
    found = providers(settings)
    for dimension, spec in scoring.dimensions.items():
        for metric in spec.metrics:
            if not metric.weight:
                continue
            sources = found.get(metric.name, ())
            if not sources:
                where.add(
                    f"{dimension}.{metric.name}",
                    f"weighted {metric.weight} but no source in {SOURCES_FILE} produces it "
                    "(Looker's metrics are the ones named under looker.looks[].metrics; "
                    "Intercom's, Jira's and Salesforce's are fixed); rename it in one of the "
                    "two files or give it weight 0",
                )
            elif len(sources) > 1:
                where.add(
                    f"{dimension}.{metric.name}",
                    f"produced by {' and '.join(sources)} (per {SOURCES_FILE}); a metric must "
                    "come from exactly one source",
                )


def _file_order(problem: ConfigProblem) -> int:
    order = ("weights.yaml", "thresholds.yaml", SOURCES_FILE)
    return order.index(problem.file) if problem.file in order else len(order)


def load_run_config(
    directory: Path, *, need_mapping: bool = True, mapping_path: Path | None = None
) -> AppConfig[SourceSettings]:
    """The whole config folder with every source's typed settings: what a live run needs.

    Every problem of every file is reported at once, as :func:`health_score.config.load_config`
    does (whose arguments these are).
    """
    files = read_config_files(directory)  # each file once: parsed, hashed and copied
    problems: list[ConfigProblem] = []
    where = Problems(SOURCES_FILE, problems)
    settings = parse_sources(parse_yaml(files, SOURCES_FILE, where), where.add)
    try:
        config = load_config(
            directory,
            need_mapping=need_mapping,
            need_sources=False,
            mapping_path=mapping_path,
            files=files,
        )
    except ConfigError as exc:
        raise ConfigError(sorted([*exc.problems, *problems], key=_file_order)) from None
    if not problems:  # with sources.yaml valid, every weighted metric needs its source
        check_providers(config.scoring, settings, problems)
    if problems:
        raise ConfigError(sorted(problems, key=_file_order))
    return AppConfig(
        config.directory, config.scoring, config.accounts, settings, config.sha256, config.files
    )
