"""Settings for writing scores back to Salesforce: the top-level ``writeback:`` section of
sources.yaml (it used to be ``salesforce.writeback``, which is now refused with a message saying
where it went). No source module is imported here: the loader's settings stand on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pydantic

#: The top-level section of sources.yaml these settings come from.
SECTION = "writeback"
#: Why ``salesforce.writeback`` is refused.
MOVED = (
    "salesforce.writeback has moved: put the write-back settings in the top-level `writeback:` "
    "section of sources.yaml (same keys), not under `salesforce:`"
)

#: Logical names of the loader's fixed fields (``health_score.loaders.salesforce.FIXED_FIELDS``).
FIXED_FIELD_KEYS = frozenset(
    {
        "name",
        "account",
        "period",
        "scoring_date",
        "segment",
        "churn_risk",
        "platform_value",
        "quantitative",
        "final",
        "tier",
        "coverage",
        "cap_applied",
        "cap_rule",
        "cap_value",
        "critical_signals",
        "critical_confirmed_signals",
        "moderate_signals",
        "watch_signals",
        "run_id",
        "config_hash",
    }
)
#: Prefixes of the per-dimension and per-metric logical names: ``dimension.<dimension>``,
#: ``metric_score.<dimension>.<metric>``, ``metric_raw.<metric>``.
PATTERN_FIELD_PREFIXES = ("dimension.", "metric_score.", "metric_raw.")


def is_api_name(name: str) -> bool:
    """A custom field API name (≤ 40 characters before ``__c``, no double underscore) or Name."""
    if name == "Name":
        return True
    if not name.endswith("__c"):
        return False
    stem = name.removesuffix("__c")
    return (
        0 < len(stem) <= 40
        and stem[0].isalpha()
        and "__" not in stem
        and not stem.endswith("_")
        and all(ch.isalnum() or ch == "_" for ch in stem)
        and stem.isascii()
    )


class WritebackSettings(pydantic.BaseModel):
    """Object, external id and field API names the loader writes, and how it chooses its path."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    object_name: str = "Health_Score__c"
    external_id_field: str = "External_Key__c"  # value: <18-char account id>-<YYYY-MM>
    account_lookup_field: str = "Account__c"
    bulk_threshold: int = pydantic.Field(200, ge=1)  # more records than this → Bulk API 2.0
    composite_batch_size: int = pydantic.Field(200, ge=1, le=200)
    poll_initial_seconds: float = pydantic.Field(0.5, gt=0)
    poll_max_seconds: float = pydantic.Field(10.0, gt=0)
    poll_timeout_seconds: float = pydantic.Field(600.0, gt=0)
    #: The Account mirror (on by default): the latest period's final score, tier, change since
    #: the previous period, period and scoring date, written onto each scored Account. An
    #: empty name stops writing that field; all five empty turns the mirror off.
    account_score_field: str = "Latest_Health_Score__c"
    account_tier_field: str = "Latest_Health_Tier__c"
    account_change_field: str = "Latest_Health_Score_Change__c"
    account_period_field: str = "Latest_Health_Period__c"
    account_date_field: str = "Latest_Health_Score_Date__c"
    #: Overrides for field API names, keyed by the loader's logical field name; an empty value
    #: stops the loader writing that field (e.g. ``metric_raw.open_bugs_total: ""``).
    fields: dict[str, str] = pydantic.Field(default_factory=dict)
    #: Salesforce REST API version the write calls use.
    api_version: str = pydantic.Field("62.0", pattern=r"^\d{2,3}\.0$")
    #: Largest CSV upload per Bulk API 2.0 job (Salesforce accepts up to 150 MB base64-encoded,
    #: i.e. about 100 MB of CSV); larger runs use several jobs.
    bulk_max_upload_bytes: int = pydantic.Field(100_000_000, ge=1_000)
    #: Salesforce error codes worth one more attempt.
    transient_errors: tuple[str, ...] = (
        "UNABLE_TO_LOCK_ROW",
        "SERVER_UNAVAILABLE",
        "REQUEST_RUNNING_TOO_LONG",
    )

    @pydantic.field_validator("object_name", "external_id_field", "account_lookup_field")
    @classmethod
    def _api_name(cls, value: str) -> str:
        if not is_api_name(value):
            raise ValueError(f"{value!r} is not a custom object or field API name (Name__c)")
        return value

    @pydantic.field_validator(
        "account_score_field",
        "account_tier_field",
        "account_change_field",
        "account_period_field",
        "account_date_field",
    )
    @classmethod
    def _optional_api_name(cls, value: str) -> str:
        if value and not is_api_name(value):
            raise ValueError(f"{value!r} is not a custom field API name (e.g. Latest_Score__c)")
        return value

    @property
    def mirror_fields(self) -> dict[str, str]:
        """Logical name → Account API name of the mirror fields written (empty: mirror off)."""
        names = {
            "score": self.account_score_field,
            "tier": self.account_tier_field,
            "change": self.account_change_field,
            "period": self.account_period_field,
            "date": self.account_date_field,
        }
        return {key: api for key, api in names.items() if api}

    @pydantic.field_validator("fields")
    @classmethod
    def _field_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for key, api_name in value.items():
            if key not in FIXED_FIELD_KEYS and not key.startswith(PATTERN_FIELD_PREFIXES):
                problems.append(
                    f"unknown logical field {key!r} (expected one of "
                    f"{', '.join(sorted(FIXED_FIELD_KEYS))} or dimension.<dimension>, "
                    "metric_score.<dimension>.<metric>, metric_raw.<metric>)"
                )
            elif api_name and not is_api_name(api_name):
                problems.append(f"{key}: {api_name!r} is not a field API name")
        if problems:
            raise ValueError("; ".join(problems))
        return value


def parse_writeback(
    raw_section: object, add_problem: Callable[[str, str], None]
) -> WritebackSettings | None:
    """The ``writeback:`` section (absent or empty: the defaults); None after reporting problems
    as (key path, message), e.g. ``("writeback.bulk_threshold", "…")``."""
    if raw_section is None:
        raw_section = {}
    if not isinstance(raw_section, Mapping):
        add_problem(SECTION, "expected a mapping of write-back settings")
        return None
    try:
        return WritebackSettings.model_validate(raw_section)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
            )
            add_problem(f"{SECTION}{where}", error["msg"])
        return None
