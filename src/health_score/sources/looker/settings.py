"""The ``looker:`` section of sources.yaml: the saved Looks, and what each metric is made of."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

import pydantic

from health_score.sources.http_policy import HttpSettings

SOURCE = "looker"
CREDENTIAL_VARS = ("LOOKER_BASE_URL", "LOOKER_CLIENT_ID", "LOOKER_CLIENT_SECRET")
CREDENTIAL_HINT = "LOOKER_CLIENT_ID / LOOKER_CLIENT_SECRET"


#: ``view.field`` as Looker keys JSON rows (a table calculation has no view part).
FieldName = Annotated[
    str, pydantic.StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
]
MetricName = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
_VIEW_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Ratio(_Model):
    """numerator / denominator of two fields of the same row."""

    numerator: FieldName
    denominator: FieldName


class FieldTransform(_Model):
    transform: Literal["field"]
    field: FieldName


class RatioTransform(_Model):
    transform: Literal["ratio"]
    numerator: FieldName
    denominator: FieldName


class PercentTransform(_Model):
    """A fraction field × 100, or numerator / denominator × 100."""

    transform: Literal["percent"]
    field: FieldName | None = None
    numerator: FieldName | None = None
    denominator: FieldName | None = None

    @pydantic.model_validator(mode="after")
    def _one_form(self) -> PercentTransform:
        ratio = self.numerator is not None or self.denominator is not None
        if self.field is not None and ratio:
            raise ValueError("give either field, or numerator and denominator, not both")
        if self.field is None and (self.numerator is None or self.denominator is None):
            raise ValueError("needs field (a fraction), or numerator and denominator")
        return self


class ChangeTransform(_Model):
    """(current − previous) / previous × 100; each side a field or a ratio of two fields.

    A previous value of 0 has no percent change: by default the metric has no value (missing);
    ``when_previous_zero: N`` defines it instead: 0 when the current value is 0 too, +N when it
    rose from 0, −N when it fell below 0 (e.g. ``100``: "from nothing to something" = +100 %).
    """

    transform: Literal["change_pct"]
    current: FieldName | Ratio
    previous: FieldName | Ratio
    when_previous_zero: Decimal | None = None

    @pydantic.field_validator("when_previous_zero")
    @classmethod
    def _finite(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not value.is_finite():
            raise ValueError("must be a finite number (or null: no value)")
        return value


class PresenceTransform(_Model):
    """1 when the customer has a row whose field counts, else 0.

    ``counts: positive`` (default): a number above 0; ``counts: any_value``: any value at all,
    text or date included (not null, not empty or blank text), for a non-numeric field such as a
    plan name or a last-login date.
    """

    transform: Literal["presence"]
    field: FieldName
    counts: Literal["positive", "any_value"] = "positive"


class SumTransform(_Model):
    """A field, or several fields added together, summed over the customer's rows.

    With ``fields``, a row's value is the sum of its numeric cells among them (a null cell adds
    nothing); a row with none of them numeric adds nothing.
    """

    transform: Literal["sum"]
    field: FieldName | None = None
    fields: tuple[FieldName, ...] = ()

    @pydantic.model_validator(mode="after")
    def _one_form(self) -> SumTransform:
        if (self.field is None) == (not self.fields):
            raise ValueError("give either field (one) or fields (a list), not both")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields lists a field twice")
        return self

    @property
    def summed(self) -> tuple[str, ...]:
        return (self.field,) if self.field is not None else self.fields


Transform = Annotated[
    FieldTransform
    | RatioTransform
    | PercentTransform
    | ChangeTransform
    | PresenceTransform
    | SumTransform,
    pydantic.Field(discriminator="transform"),
]


def _look_id(value: object) -> object:
    # YAML reads `id: 101` as an int; Looker 4.0 ids are strings.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


LookId = Annotated[
    str,
    pydantic.BeforeValidator(_look_id),
    pydantic.StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
]


class LookField(_Model):
    """A field of one configured Look: the customer's value is the field summed over its rows
    there (a one-row-per-customer Look: the row's value; 0 for a customer Looker knows that has
    no row in that Look)."""

    look: LookId
    field: FieldName


class AcrossLooks(_Model):
    """A ratio (or percent) whose numerator and denominator come from two different Looks."""

    transform: Literal["ratio", "percent"]
    numerator: LookField
    denominator: LookField

    @property
    def sides(self) -> tuple[LookField, LookField]:
        return self.numerator, self.denominator


class LookSettings(_Model):
    """One saved Look: its id, the field naming the customer, and the metrics it yields."""

    id: LookId
    name: str = ""
    customer_id_field: FieldName
    #: The Look's date field (``view.field``, e.g. a ``_month`` or ``_date`` timeframe): a run
    #: replaces the saved query's filter on it with the period's range and runs that query
    #: (run_inline_query); without one the Look is run as saved, which only describes the
    #: current period.
    date_field: str | None = None
    limit: int = -1  # -1 = all rows; a positive limit that is reached is reported as truncation
    metrics: dict[MetricName, Transform] = pydantic.Field(min_length=1)

    @pydantic.field_validator("date_field")
    @classmethod
    def _date_field(cls, value: str | None) -> str | None:
        if value is not None and not _VIEW_FIELD.fullmatch(value):
            raise ValueError(
                f"must name the Look's date field as view.field (for example "
                f"account_usage.activity_month), not {value!r}"
            )
        return value

    @pydantic.field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if value != -1 and value < 1:
            raise ValueError("must be -1 (no row cap) or a positive number of rows")
        return value

    @property
    def label(self) -> str:
        return f"Look {self.id}" + (f" ({self.name})" if self.name else "")


class Settings(_Model):
    """The ``looker:`` section of sources.yaml."""

    #: ``enabled: false`` switches the source off: its metrics are unavailable (never missing).
    enabled: bool = True
    looks: tuple[LookSettings, ...] = ()
    #: Metrics combining two Looks: ``ratio`` or ``percent`` of a field of one Look over a field
    #: of another, per customer (see :class:`AcrossLooks`).
    across_looks: dict[MetricName, AcrossLooks] = pydantic.Field(default_factory=dict)
    #: A saved Look answers for its own relative window ("last 30 days" of Looker's today), so a
    #: run whose ``as_of`` is more than this many days before its reference now cannot use a Look
    #: that names no ``date_field``: it is not run and its metrics are *unavailable*.
    current_state_grace_days: int = pydantic.Field(7, ge=0, le=366)
    http: HttpSettings = HttpSettings.model_validate({})

    @pydantic.field_validator("looks")
    @classmethod
    def _unique(cls, looks: tuple[LookSettings, ...]) -> tuple[LookSettings, ...]:
        seen_ids: set[str] = set()
        seen_metrics: dict[str, str] = {}
        for look in looks:
            if look.id in seen_ids:
                raise ValueError(f"Look {look.id} is listed twice (each Look is run once)")
            seen_ids.add(look.id)
            for metric in look.metrics:
                if metric in seen_metrics:
                    raise ValueError(
                        f"metric {metric} comes from both Look {seen_metrics[metric]} "
                        f"and Look {look.id}"
                    )
                seen_metrics[metric] = look.id
        return looks

    @pydantic.model_validator(mode="after")
    def _across_known(self) -> Settings:
        ids = {look.id for look in self.looks}
        own = {m for look in self.looks for m in look.metrics}
        for metric, spec in self.across_looks.items():
            if metric in own:
                raise ValueError(f"across_looks.{metric}: a Look already yields metric {metric}")
            for side in ("numerator", "denominator"):
                look_id = getattr(spec, side).look
                if look_id not in ids:
                    raise ValueError(
                        f"across_looks.{metric}.{side}: Look {look_id} is not in looker.looks"
                    )
        return self

    def across_fields(self, look_id: str) -> set[str]:
        """The fields across-Look metrics read from one Look."""
        return {
            side.field
            for spec in self.across_looks.values()
            for side in spec.sides
            if side.look == look_id
        }

    @property
    def metric_names(self) -> frozenset[str]:
        return frozenset(m for look in self.looks for m in look.metrics) | frozenset(
            self.across_looks
        )
