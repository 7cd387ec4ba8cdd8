"""The deployable metadata in salesforce/ holds every field the product writes and reads."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest

from health_score.loaders.salesforce import FIXED_FIELDS, FieldMap
from health_score.loaders.salesforce_settings import WritebackSettings, is_api_name
from health_score.scoring.spec import INSUFFICIENT_DATA
from health_score.sources.salesforce import Settings
from health_score_sandbox.salesforce_write import MD_NS, FieldSpec, ObjectSchema, load_schema
from tests.salesforce_write_support import CONFIG

REPO = Path(__file__).resolve().parents[2]
METADATA = REPO / "salesforce"
SCHEMA = load_schema(METADATA)
DEFAULTS = WritebackSettings.model_validate({})
READ = Settings()

SCORE_TYPES = {"Number", "Percent"}
COUNT_FIELDS = {
    "critical_signals",
    "critical_confirmed_signals",
    "moderate_signals",
    "watch_signals",
}


def written_fields() -> dict[str, str]:
    """Logical name → API name of every Health_Score__c field the loader writes by default."""
    pairs = [
        (dim, metric.name) for dim, spec in CONFIG.dimensions.items() for metric in spec.metrics
    ]
    return {k: v for k, v in FieldMap.build(DEFAULTS, pairs).names.items() if v}


def field_of(obj: str, name: str) -> FieldSpec:
    schema: ObjectSchema | None = SCHEMA.get(obj)
    assert schema is not None, f"salesforce/objects/{obj} is missing"
    spec = schema.fields.get(name)
    assert spec is not None, f"{obj}.{name} is missing from salesforce/"
    return spec


def holds_score(spec: FieldSpec) -> bool:
    """0–100 with one decimal."""
    return (
        spec.type in SCORE_TYPES
        and (spec.scale or 0) >= 1
        and (spec.precision or 0) - (spec.scale or 0) >= 3
    )


def test_every_field_the_loader_writes_exists_with_a_compatible_type() -> None:
    fields = written_fields()
    assert len(fields) > 70
    for logical, api in fields.items():
        spec = field_of(DEFAULTS.object_name, api)
        if logical in COUNT_FIELDS:
            assert spec.type == "Number" and spec.scale == 0, api
        elif logical == "account":
            assert (spec.type, spec.reference_to) == ("Lookup", "Account"), api
        elif logical == "scoring_date":
            assert spec.type == "Date", api
        elif logical == "cap_applied":
            assert spec.type == "Checkbox", api
        elif logical == "tier":
            assert spec.type == "Picklist" and spec.restricted, api
        elif logical.startswith("metric_raw."):
            assert spec.type == "Number" and (spec.scale or 0) >= 4, api
            assert (spec.precision or 0) == 18, api
        elif logical in ("name", "period", "segment", "cap_rule", "run_id", "config_hash"):
            assert spec.type == "Text", api
        else:
            assert holds_score(spec), api


def test_text_fields_are_long_enough_for_what_the_loader_writes() -> None:
    fields = written_fields()
    minimum = {
        "period": 7,
        "config_hash": 64,  # a SHA-256 in hex
        "cap_rule": max(len(f"{r.condition}: {r.description}") for r in CONFIG.cap_rules),
        "segment": max(len(s) for s in CONFIG.segments),
        "run_id": 36,  # a UUID
        "name": 80,
    }
    for logical, length in minimum.items():
        spec = field_of(DEFAULTS.object_name, fields[logical])
        assert (spec.length or 0) >= length, logical


def test_the_tier_picklist_holds_every_configured_tier_and_insufficient_data() -> None:
    tiers = {t.label for t in CONFIG.tiers} | {INSUFFICIENT_DATA}
    assert set(field_of(DEFAULTS.object_name, FIXED_FIELDS["tier"]).picklist) == tiers
    assert set(field_of("Account", "Latest_Health_Tier__c").picklist) == tiers


def test_the_external_id_is_a_unique_case_sensitive_external_id_that_fits_the_key() -> None:
    spec = field_of(DEFAULTS.object_name, DEFAULTS.external_id_field)
    assert (spec.type, spec.external_id, spec.unique, spec.case_sensitive) == (
        "Text",
        True,
        True,
        True,
    )
    assert (spec.length or 0) >= len("0015g00000AbCdEAAZ-2026-11")


def test_the_account_mirror_fields_exist_for_the_settings_to_name() -> None:
    assert holds_score(field_of("Account", "Latest_Health_Score__c"))
    assert field_of("Account", "Latest_Health_Tier__c").type == "Picklist"


def custom(name: str) -> bool:
    return name.endswith("__c")


def test_every_custom_account_field_the_extractor_reads_exists_with_a_compatible_type() -> None:
    account = READ.account
    expected = {
        account.renewal_date_field: {"Date"},
        account.arr_field: {"Currency", "Number"},
        account.prior_year_arr_field: {"Currency", "Number"},
        account.support_tier_field: {"Picklist", "Text"},
        account.champion_changed_date_field: {"Date", "DateTime"},
        account.avg_response_hours_field: {"Number"},
    }
    for name, types in expected.items():
        if custom(name):
            assert field_of(account.object_name, name).type in types, name
    tier = field_of(account.object_name, account.support_tier_field)
    assert set(READ.tier_alignment.standard_tiers) <= set(tier.picklist)


def test_every_churn_signal_field_the_extractor_reads_exists_with_its_picklist_values() -> None:
    signal = READ.churn_signal
    lookup = field_of(signal.object_name, signal.account_field)
    assert (lookup.type, lookup.reference_to) == ("Lookup", "Account")
    values = {
        signal.severity_field: (
            *signal.critical_values,
            *signal.moderate_values,
            *signal.watch_values,
        ),
        signal.confidence_field: signal.confirmed_values,
        signal.status_field: (*signal.active_values, *signal.monitoring_values),
    }
    for name, needed in values.items():
        spec = field_of(signal.object_name, name)
        assert spec.type == "Picklist", name
        assert set(needed) <= set(spec.picklist), name


def test_every_payment_and_event_field_the_extractor_reads_exists() -> None:
    payment = READ.payment
    assert field_of(payment.object_name, payment.account_field).reference_to == "Account"
    status = field_of(payment.object_name, payment.status_field)
    assert status.type == "Picklist" and set(payment.failed_values) <= set(status.picklist)
    assert field_of(payment.object_name, payment.date_field).type == "Date"
    # Custom Event fields are defined on Activity.
    assert field_of("Activity", READ.event.attended_field).type == "Checkbox"


def metadata_files() -> list[Path]:
    return sorted(METADATA.rglob("*-meta.xml"))


@pytest.mark.parametrize("path", metadata_files(), ids=lambda p: str(p.relative_to(METADATA)))
def test_each_metadata_file_is_well_formed_source_format(path: Path) -> None:
    root = ET.parse(path).getroot()  # noqa: S314 - the project's own files
    assert root.tag.startswith(MD_NS)
    if path.name.endswith(".field-meta.xml"):
        full_name = root.findtext(f"{MD_NS}fullName")
        assert full_name == path.name.removesuffix(".field-meta.xml")
        assert path.parent.name == "fields"
        assert is_api_name(full_name)
        label = root.findtext(f"{MD_NS}label") or ""
        assert 0 < len(label) <= 40
        assert len(root.findtext(f"{MD_NS}description") or "") <= 1000


def test_the_permission_set_lets_the_integration_user_edit_every_written_field() -> None:
    path = METADATA / "permissionsets" / "Health_Score_Middleware.permissionset-meta.xml"
    root = ET.parse(path).getroot()  # noqa: S314 - the project's own file
    editable = {
        p.findtext(f"{MD_NS}field")
        for p in root.iter(f"{MD_NS}fieldPermissions")
        if p.findtext(f"{MD_NS}editable") == "true"
    }
    wanted = {f"{DEFAULTS.object_name}.{api}" for api in written_fields().values() if api != "Name"}
    assert wanted <= editable


def test_the_sfdx_project_points_the_salesforce_cli_at_this_folder() -> None:
    project = json.loads((REPO / "sfdx-project.json").read_text(encoding="utf-8"))
    assert [p["path"] for p in project["packageDirectories"]] == ["salesforce"]
    assert Decimal(project["sourceApiVersion"]) >= Decimal(DEFAULTS.api_version)


def test_every_health_alert_field_the_alerts_write_exists_with_a_compatible_type() -> None:
    from datetime import date

    from health_score.alerts.delivery import alert_values
    from health_score.alerts.evaluation import Alert, Driver
    from health_score.alerts.rules import SalesforceDelivery

    settings = SalesforceDelivery()
    alert = Alert(
        "2026-10",
        "001Sb0000000001IAA",
        "Acme",
        "tier_worsened",
        "tier_worsened",
        "Health tier worsened",
        "tier Healthy → At Risk",
        "At Risk",
        "Healthy",
        Decimal("70.0"),
        Decimal("81.5"),
        (Driver("p1_p2_volume", "support_health", "2", "6", Decimal("-9.0")),),
    )
    values = alert_values(
        alert,
        "001Sb0000000001IAA",
        run_id=f"2026-10_{date(2026, 11, 1):%Y%m%d}T060000Z_abcdef",
        external_id_field=settings.external_id_field,
        owner_id="005000000000001AAA",
    )
    key = field_of(settings.object_name, settings.external_id_field)
    assert key.external_id and key.unique and key.case_sensitive and (key.length or 0) >= 67
    for api in values:
        if api == "OwnerId":
            continue  # standard
        if api.endswith("__r"):
            spec = field_of(settings.object_name, api.removesuffix("__r") + "__c")
            assert (spec.type, spec.reference_to) == ("Lookup", "Health_Score__c")
            continue
        spec = field_of(settings.object_name, api)
        if api == "Account__c":
            assert (spec.type, spec.reference_to) == ("Lookup", "Account")
        elif api in ("Final_Score__c", "Score_Change__c"):
            assert holds_score(spec), api
        elif api == "Drivers__c":
            assert spec.type == "LongTextArea"
        else:
            assert spec.type == "Text", api
            value = values[api]
            assert isinstance(value, str) and len(value) <= (spec.length or 0), api


# -- the Account mirror and what a CSM sees ---------------------------------------------------

PERMSET = METADATA / "permissionsets" / "Health_Score_Middleware.permissionset-meta.xml"
#: Standard fields the layouts, list views and report type may name (no metadata file for them).
STANDARD = {
    "Account": {"Name", "OwnerId", "ParentId", "Type", "Industry", "Phone", "Website"},
    "*": {"Name", "OwnerId", "CreatedById", "LastModifiedById"},
}
#: List view column and related-list aliases of standard fields.
ALIASES = {"NAME", "ACCOUNT.NAME", "CORE.USERS.ALIAS", "FULL_NAME", "CORE.USERS.FULL_NAME"}


def xml(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314 - the project's own files


def texts(node: ET.Element, tag: str) -> list[str]:
    return [e.text or "" for e in node.iter(f"{MD_NS}{tag}")]


def exists(obj: str, name: str) -> bool:
    if name in STANDARD.get(obj, set()) | STANDARD["*"]:
        return True
    schema = SCHEMA.get(obj)
    return schema is not None and name in schema.fields


def test_the_mirror_is_on_by_default_and_every_mirror_field_exists_with_a_compatible_type() -> None:
    names = DEFAULTS.mirror_fields
    assert set(names) == {"score", "tier", "change", "period", "date"}
    assert holds_score(field_of("Account", names["score"]))
    assert field_of("Account", names["tier"]).type == "Picklist"
    change = field_of("Account", names["change"])  # −100.0 … +100.0
    assert change.type == "Number" and change.scale == 1 and (change.precision or 0) >= 4
    period = field_of("Account", names["period"])
    assert period.type == "Text" and (period.length or 0) >= 7
    assert field_of("Account", names["date"]).type == "Date"


def test_the_permission_set_grants_the_mirror_the_tabs_and_account_edit() -> None:
    root = xml(PERMSET)
    editable = {
        p.findtext(f"{MD_NS}field")
        for p in root.iter(f"{MD_NS}fieldPermissions")
        if p.findtext(f"{MD_NS}editable") == "true"
    }
    assert {f"Account.{api}" for api in DEFAULTS.mirror_fields.values()} <= editable
    account = [
        p
        for p in root.iter(f"{MD_NS}objectPermissions")
        if p.findtext(f"{MD_NS}object") == "Account"
    ]
    assert [
        (p.findtext(f"{MD_NS}allowRead"), p.findtext(f"{MD_NS}allowEdit")) for p in account
    ] == [("true", "true")]
    tabs = {
        p.findtext(f"{MD_NS}tab"): p.findtext(f"{MD_NS}visibility")
        for p in root.iter(f"{MD_NS}tabSettings")
    }
    assert tabs == {"Health_Score__c": "Visible", "Health_Alert__c": "Visible"}
    for tab in tabs:
        assert (METADATA / "tabs" / f"{tab}.tab-meta.xml").is_file()
        assert tab in SCHEMA  # a tab of an object the folder defines


def layouts() -> list[Path]:
    return sorted((METADATA / "layouts").glob("*.layout-meta.xml"))


@pytest.mark.parametrize("path", layouts(), ids=lambda p: p.name)
def test_each_layout_names_existing_fields_and_related_lists(path: Path) -> None:
    obj = path.name.split("-", 1)[0]
    root = xml(path)
    assert root.tag == f"{MD_NS}Layout"
    for section in root.iter(f"{MD_NS}layoutSections"):
        assert section.findtext(f"{MD_NS}label") and section.findtext(f"{MD_NS}style")
        for item in section.iter(f"{MD_NS}layoutItems"):
            name = item.findtext(f"{MD_NS}field") or ""
            assert item.findtext(f"{MD_NS}behavior") in {"Edit", "Readonly", "Required"}, name
            assert exists(obj, name), f"{path.name}: {obj}.{name}"
    for related in root.iter(f"{MD_NS}relatedLists"):
        name = related.findtext(f"{MD_NS}relatedList") or ""
        child, dot, lookup = name.partition(".")
        if not dot:
            continue  # a standard related list (RelatedContactList…)
        spec = field_of(child, lookup)
        assert (spec.type, spec.reference_to) == ("Lookup", obj), name
        for column in texts(related, "fields"):
            assert column in ALIASES or exists(child, column), f"{name}: {column}"
        sort = related.findtext(f"{MD_NS}sortField")
        assert sort is None or exists(child, sort), name


def test_the_account_layout_shows_the_mirror_and_both_related_lists() -> None:
    root = xml(METADATA / "layouts" / "Account-Account Layout.layout-meta.xml")
    fields = set(texts(root, "field"))
    assert set(DEFAULTS.mirror_fields.values()) <= fields
    related = set(texts(root, "relatedList"))
    assert {"Health_Score__c.Account__c", "Health_Alert__c.Account__c"} <= related


def list_views() -> list[Path]:
    return sorted(METADATA.glob("objects/*/listViews/*.listView-meta.xml"))


@pytest.mark.parametrize("path", list_views(), ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_each_list_view_filters_on_existing_fields_and_picklist_values(path: Path) -> None:
    obj = path.parents[1].name
    root = xml(path)
    assert root.findtext(f"{MD_NS}fullName") == path.name.removesuffix(".listView-meta.xml")
    assert root.findtext(f"{MD_NS}label")
    assert root.findtext(f"{MD_NS}filterScope") in {"Everything", "Mine", "Queue"}
    for column in texts(root, "columns"):
        assert column in ALIASES or exists(obj, column), f"{path.name}: {column}"
    for node in root.iter(f"{MD_NS}filters"):
        name = node.findtext(f"{MD_NS}field") or ""
        spec = field_of(obj, name)
        value = node.findtext(f"{MD_NS}value") or ""
        assert node.findtext(f"{MD_NS}operation") in {
            "equals",
            "notEqual",
            "lessThan",
            "greaterThan",
        }
        if spec.type == "Picklist":
            assert set(value.split(",")) <= set(spec.picklist), f"{path.name}: {value}"
        elif spec.type == "Date":
            assert value in {"THIS_MONTH", "LAST_MONTH", "TODAY"}, value
        elif spec.type == "Number":
            Decimal(value)


def test_the_two_account_list_views_say_at_risk_and_critical_and_dropped_this_month() -> None:
    folder = METADATA / "objects" / "Account" / "listViews"
    at_risk = xml(folder / "At_Risk_and_Critical.listView-meta.xml")
    assert texts(at_risk, "value") == ["At Risk,Critical"]
    dropped = xml(folder / "Dropped_This_Month.listView-meta.xml")
    assert [
        (f.findtext(f"{MD_NS}field"), f.findtext(f"{MD_NS}operation"), f.findtext(f"{MD_NS}value"))
        for f in dropped.iter(f"{MD_NS}filters")
    ] == [
        ("Latest_Health_Score_Change__c", "lessThan", "0"),
        ("Latest_Health_Score_Date__c", "equals", "THIS_MONTH"),
    ]


def test_the_report_type_joins_accounts_to_health_scores_with_existing_fields() -> None:
    root = xml(METADATA / "reportTypes" / "Accounts_with_Health_Scores.reportType-meta.xml")
    assert root.findtext(f"{MD_NS}baseObject") == "Account"
    assert root.findtext(f"{MD_NS}category") == "accounts"
    assert root.findtext(f"{MD_NS}deployed") == "true" and root.findtext(f"{MD_NS}label")
    join = root.find(f"{MD_NS}join")
    assert join is not None and join.findtext(f"{MD_NS}relationship") == "Health_Scores__r"
    lookup = field_of("Health_Score__c", "Account__c")
    assert lookup.reference_to == "Account"
    relationship = xml(METADATA / "objects/Health_Score__c/fields/Account__c.field-meta.xml")
    assert relationship.findtext(f"{MD_NS}relationshipName") == "Health_Scores"
    tables = {"Account": "Account", "Account.Health_Scores__r": "Health_Score__c"}
    columns = list(root.iter(f"{MD_NS}columns"))
    assert len(columns) > 10
    for column in columns:
        obj = tables[column.findtext(f"{MD_NS}table") or ""]
        name = column.findtext(f"{MD_NS}field") or ""
        assert exists(obj, name), f"{obj}.{name}"
