"""``health-score mapping suggest``: propose account_mapping.csv rows for a person to review.

Reads who each system knows — Salesforce accounts, Intercom companies, the customers of one
configured Looker Look and the customers of the mapped Jira projects (components, or the
configured customer field) — and links records that are the same customer by evidence:

- **domain**: the same web domain (Salesforce ``Website``, when the object has it, against an
  Intercom company's ``website``);
- **name**: the same normalised name (letter case, accents, punctuation, "&"/"and" and legal
  suffixes such as Inc, Ltd, GmbH ignored: "Acme Labs, Inc." = "ACME LABS"); or nearly the
  same words (every word of the shorter name in the longer one);
- **external id**: the same customer number inside two systems' ids or names
  ("C000123", "cmp_000123", "cust-00123", "Acme Labs 00123").

Evidence only counts when it is unambiguous: a key two records of one system share links
neither. Records are joined greedily, strongest link first, never two records of one system in
one row; a row's confidence is that of its weakest link (1 - Π(1 - c) of the evidence of one
link). The result is written to a new file with ``confidence``, ``match`` and ``evidence``
columns after the mapping's own; the mapping itself is never touched.

Every source is read with its own client, auth and HTTP policy, in requests that grow with the
data (pages of companies, accounts, issues; one Look run), never one per record.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from health_score.config import JIRA_PROJECT_KEY, MAPPING_COLUMNS, SAFE_TEXT
from health_score.csvsafe import safe_cell
from health_score.salesforce_ids import salesforce_id18_or_none
from health_score.sources.http import SourceError
from health_score.sources.intercom import extractor as intercom
from health_score.sources.intercom.extractor import IntercomExtractor
from health_score.sources.jira import COMPONENT
from health_score.sources.jira import extractor as jira
from health_score.sources.jira.extractor import SEARCH_PATH, jql_list
from health_score.sources.looker import extractor as looker
from health_score.sources.registry import SourceSettings
from health_score.sources.salesforce.client import SalesforceClient
from health_score.sources.salesforce.soql_text import soql_list

log = logging.getLogger(__name__)

SYSTEMS = ("salesforce", "intercom", "looker", "jira")
#: The columns the suggestion adds after the mapping's own.
EXTRA_COLUMNS = ("confidence", "match", "evidence")

#: Confidence of one piece of evidence.
DOMAIN = 0.95
NAME_EXACT = 0.9
NAME_WORDS = 0.6
NUMBER_IN_IDS = 0.6  # the same customer number in both records' ids
NUMBER_IN_NAME = 0.4  # … where one of them carries it in its name only

_LEGAL = frozenset(
    {"inc", "incorporated", "llc", "ltd", "limited", "plc", "corp", "corporation", "co"}
    | {"company", "gmbh", "ag", "sa", "sas", "sarl", "bv", "nv", "srl", "spa", "oy", "ab"}
    | {"as", "aps", "kg", "pty", "pte", "the"}
)
_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"(\d{3,})(?!.*\d)")  # the last run of 3+ digits
_WEBSITE_FIELD = "Website"


class SuggestError(Exception):
    """Bad usage or a refused output (exit 2)."""


# --------------------------------------------------------------------------------------------
# Keys


def name_words(name: str) -> tuple[str, ...]:
    """A name's words for matching: accents, case and apostrophes dropped, "&" as "and",
    legal suffixes left out, numbers without leading zeros."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = text.replace("&", " and ").replace("'", "")
    words = [w.lstrip("0") or "0" if w.isdigit() else w for w in _WORD.findall(text)]
    return tuple(w for w in words if w not in _LEGAL)


def name_key(name: str) -> str:
    return " ".join(name_words(name))


def number_key(text: str) -> str | None:
    """The customer number in an id or name: its last run of 3+ digits, zeros dropped."""
    found = _NUMBER.search(text)
    if found is None:
        return None
    return found.group(1).lstrip("0") or "0"


def domain_key(website: str) -> str | None:
    text = website.strip().casefold()
    if not text:
        return None
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = host.removeprefix("www.")
    return host if "." in host else None


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class Record:
    """One customer as one system knows it."""

    system: str
    id: str
    name: str = ""
    domain: str | None = None
    segment: str = ""
    project: str = ""  # Jira: the project the component belongs to

    @property
    def label(self) -> str:
        return f"{self.system} {self.id}" + (f" {self.name!r}" if self.name else "")


def read_salesforce(
    settings: SourceSettings, env: Mapping[str, str], types: Sequence[str]
) -> list[Record]:
    """Every account of the configured object (``types``: only these ``Type`` values)."""
    sf = settings.salesforce
    client = SalesforceClient.from_env(env, version=sf.api_version, policy=sf.http.policy(None))
    if client is None:
        return []
    obj = sf.account.object_name
    try:
        client.connect()
        described = client.get_json(f"sobjects/{obj}/describe")
        fields = {f.get("name") for f in described.get("fields", []) if isinstance(f, Mapping)}
        chosen = ["Id", "Name"] + ([_WEBSITE_FIELD] if _WEBSITE_FIELD in fields else [])
        # The object is an ApiName validated by sources.yaml's settings; values are escaped.
        soql = f"SELECT {', '.join(chosen)} FROM {obj}"  # noqa: S608
        if types:
            soql += f" WHERE Type IN {soql_list(types)}"
        records = []
        for row in client.query(soql):
            account_id = salesforce_id18_or_none(str(row.get("Id") or ""))
            if account_id is None:
                continue
            records.append(
                Record(
                    "salesforce",
                    account_id,
                    str(row.get("Name") or ""),
                    domain_key(str(row.get(_WEBSITE_FIELD) or "")),
                )
            )
        return records
    finally:
        client.close()


def read_intercom(
    settings: SourceSettings, env: Mapping[str, str], segments: frozenset[str]
) -> list[Record]:
    """Every company, by the scroll API (pages of companies)."""
    extractor = intercom.from_env(settings.intercom, env)
    if extractor is None:
        return []
    assert isinstance(extractor, IntercomExtractor)  # no export given: the API extractor
    client = extractor.client
    spelled = {s.casefold(): s for s in segments}
    records: list[Record] = []
    param: str | None = None
    seen: set[str] = set()
    endpoint = "GET /companies/scroll"
    while True:  # one scroll, walked to its empty page (which closes it)
        page = client.get_json("companies/scroll", params={"scroll_param": param} if param else {})
        companies = page.get("data") if isinstance(page, Mapping) else None
        if not isinstance(companies, list):
            raise SourceError("intercom", endpoint, "response has no 'data' list")
        if not companies:
            return records
        fresh = 0
        for company in companies:
            if not isinstance(company, Mapping) or not company.get("id"):
                continue
            if str(company["id"]) in seen:
                continue
            seen.add(str(company["id"]))
            fresh += 1
            if not company.get("company_id"):
                continue
            attributes = company.get("custom_attributes")
            segment = attributes.get("segment") if isinstance(attributes, Mapping) else None
            records.append(
                Record(
                    "intercom",
                    str(company["company_id"]),
                    str(company.get("name") or ""),
                    domain_key(str(company.get("website") or "")),
                    spelled.get(str(segment or "").casefold(), ""),
                )
            )
        if not fresh:
            raise SourceError("intercom", endpoint, "loop detected: a page repeated companies")
        param = page.get("scroll_param")
        if not isinstance(param, str) or not param:
            raise SourceError("intercom", endpoint, "a non-empty page has no scroll_param")


def read_looker(
    settings: SourceSettings,
    env: Mapping[str, str],
    look_id: str | None,
    name_field: str | None,
) -> list[Record]:
    """The customers of one configured Look (run once, as saved)."""
    extractor = looker.from_env(settings.looker, env)
    if not isinstance(extractor, looker.LookerExtractor):
        return []
    looks = settings.looker.looks
    if not looks:
        raise SuggestError("sources.yaml: looker.looks: no Look is configured to read customers")
    chosen = [look for look in looks if look_id is None or look.id == look_id]
    if not chosen:
        known = [look.id for look in looks]
        raise SuggestError(f"--looker-look {look_id!r} is not in sources.yaml (looks: {known})")
    look = chosen[0]
    names: dict[str, str] = {}
    for row in extractor.run_look(look):
        customer = row.get(look.customer_id_field)
        if customer is None or str(customer) == "":
            continue
        name = str(row.get(name_field) or "") if name_field else ""
        names.setdefault(str(customer), name)
    return [Record("looker", customer, name) for customer, name in names.items()]


def read_jira(
    settings: SourceSettings, env: Mapping[str, str], projects: Sequence[str]
) -> list[Record]:
    """The customers named by the issues of ``projects`` (components, or the configured
    customer field), read page by page with only that field."""
    extractor = jira.from_env(settings.jira, env)
    if extractor is None or not projects:
        return []
    customer_field = settings.jira.customer_field
    wire = "components" if customer_field == COMPONENT else customer_field
    client = extractor.client
    jql = f"project IN {jql_list(projects)} ORDER BY key"
    found: dict[tuple[str, str], None] = {}
    token: str | None = None
    seen: set[str] = set()
    while True:
        body: dict[str, Any] = {
            "jql": jql,
            "fields": ["project", wire],
            "maxResults": settings.jira.page_size,
        }
        if token is not None:
            body["nextPageToken"] = token
        page = client.post_json(SEARCH_PATH, json=body)
        issues = page.get("issues") if isinstance(page, Mapping) else None
        if not isinstance(issues, list):
            raise SourceError("jira", f"POST {SEARCH_PATH}", "response has no 'issues' list")
        for issue in issues:
            fields = issue.get("fields") if isinstance(issue, Mapping) else None
            if not isinstance(fields, Mapping):
                continue
            project = fields.get("project")
            key = project.get("key") if isinstance(project, Mapping) else None
            if not isinstance(key, str):
                continue
            for value in _customer_values(fields.get(wire)):
                found.setdefault((key, value), None)
        token = page.get("nextPageToken")
        if page.get("isLast") is True or not isinstance(token, str) or token in seen:
            break
        seen.add(token)
    return [Record("jira", value, value, project=key) for key, value in found]


def _customer_values(raw: object) -> Iterable[str]:
    items = raw if isinstance(raw, list) else [raw]
    for item in items:
        if isinstance(item, Mapping):
            item = item.get("name") or item.get("value")
        if isinstance(item, str) and item:
            yield item


# --------------------------------------------------------------------------------------------
# Matching


@dataclass(frozen=True, slots=True)
class Link:
    a: int
    b: int
    confidence: float
    evidence: tuple[str, ...]
    kinds: frozenset[str] = frozenset()

    @property
    def strong(self) -> bool:
        """Backed by a domain or the same name: it outweighs names that share no word."""
        return bool(self.kinds & {"domain", "name"})


def _combined(scores: Iterable[float]) -> float:
    remaining = 1.0
    for score in scores:
        remaining *= 1 - score
    return 1 - remaining


def _unique_index(
    records: Sequence[Record], keys: Sequence[str | None]
) -> dict[str, dict[str, int]]:
    """key → system → the one record of that system holding it (keys two records of one
    system share are dropped for that system: ambiguous)."""
    index: dict[str, dict[str, int]] = {}
    clashes: set[tuple[str, str]] = set()
    for position, (record, key) in enumerate(zip(records, keys, strict=True)):
        if not key:
            continue
        by_system = index.setdefault(key, {})
        if record.system in by_system:
            clashes.add((key, record.system))
        by_system[record.system] = position
    for key, system in clashes:
        del index[key][system]
    return index


def find_links(records: Sequence[Record]) -> list[Link]:
    """Every pair of records of different systems with unambiguous evidence."""
    evidence: dict[tuple[int, int], dict[str, tuple[float, str]]] = {}

    def add(
        index: dict[str, dict[str, int]],
        kind: str,
        score: float | Callable[[int, int], float | None],
        what: str,
    ) -> None:
        for key, by_system in index.items():
            positions = sorted(by_system.values())
            for i, a in enumerate(positions):
                for b in positions[i + 1 :]:
                    value = score(a, b) if callable(score) else score
                    if value is not None:
                        evidence.setdefault((a, b), {})[kind] = (value, f"{what} {key!r}")

    add(_unique_index(records, [r.domain for r in records]), "domain", DOMAIN, "same domain")
    names = [name_key(r.name) if r.name else None for r in records]
    add(_unique_index(records, names), "name", NAME_EXACT, "same normalised name")
    numbers = [_number_of(r) for r in records]

    def number_score(a: int, b: int) -> float | None:
        if _contradict(records[a], records[b]):
            return None  # two display names with no word in common: a coincidence
        in_ids = all(found is not None and found[1] for found in (numbers[a], numbers[b]))
        return NUMBER_IN_IDS if in_ids else NUMBER_IN_NAME

    keys = [found[0] if found else None for found in numbers]
    add(_unique_index(records, keys), "number", number_score, "same customer number")
    _add_word_matches(records, names, evidence)
    links = []
    for (a, b), kinds in evidence.items():
        if "name" in kinds:
            kinds.pop("words", None)
        links.append(
            Link(
                a,
                b,
                _combined(score for score, _ in kinds.values()),
                tuple(text for _, text in kinds.values()),
                frozenset(kinds),
            )
        )
    links.sort(key=lambda link: (-link.confidence, link.a, link.b))
    return links


def _number_of(record: Record) -> tuple[str, bool] | None:
    """The customer number of a record and whether its id holds it (else its name). A
    Salesforce id's digits are the org's record counter, not a customer number: only its name
    counts."""
    if record.system != "salesforce":
        found = number_key(record.id)
        if found is not None:
            return found, True
    named = number_key(record.name) if record.name else None
    return (named, False) if named is not None else None


def _contradict(a: Record, b: Record) -> bool:
    first, second = _display_words(a), _display_words(b)
    return bool(first and second and not first & second)


def _display_words(record: Record) -> frozenset[str]:
    """The words of a record's name when it is a name, not just its id (a Jira component or a
    nameless Looker customer), without numbers."""
    if not record.name or record.name == record.id:
        return frozenset()
    return frozenset(w for w in name_words(record.name) if not w.isdigit())


def _add_word_matches(
    records: Sequence[Record],
    names: Sequence[str | None],
    evidence: dict[tuple[int, int], dict[str, tuple[float, str]]],
) -> None:
    """Names whose shorter one's words all appear in the longer ("Acme" ~ "Acme Labs"), when
    exactly one record of the other system qualifies. Candidates come from a word index, so
    the work grows with the records sharing a word, not with all pairs."""
    by_word: dict[str, list[int]] = {}
    for position, key in enumerate(names):
        for word in set((key or "").split()):
            by_word.setdefault(word, []).append(position)
    for position, key in enumerate(names):
        words = set((key or "").split())
        if not words:
            continue
        rarest = min(words, key=lambda w: len(by_word[w]))
        candidates: dict[str, list[int]] = {}
        for other in by_word[rarest]:
            if records[other].system == records[position].system or names[other] == key:
                continue
            other_words = set((names[other] or "").split())
            if words <= other_words:
                candidates.setdefault(records[other].system, []).append(other)
        for found in candidates.values():
            if len(found) == 1:
                a, b = sorted((position, found[0]))
                evidence.setdefault((a, b), {})["words"] = (
                    NAME_WORDS,
                    f"name words {names[position]!r} within {names[found[0]]!r}",
                )


@dataclass
class Group:
    members: dict[str, int] = field(default_factory=dict)  # system → record position
    links: list[Link] = field(default_factory=list)


def group_records(records: Sequence[Record], links: Sequence[Link]) -> list[Group]:
    """Join records strongest link first; a row never holds two records of one system, nor,
    unless a domain or the same name says so, two display names without a word in common."""
    owner = list(range(len(records)))
    groups = {i: Group({records[i].system: i}) for i in range(len(records))}
    for link in links:
        ga, gb = owner[link.a], owner[link.b]
        if ga == gb:
            continue
        first, second = groups[ga], groups[gb]
        if first.members.keys() & second.members.keys():
            continue
        if not link.strong and any(
            _contradict(records[a], records[b])
            for a in first.members.values()
            for b in second.members.values()
        ):
            continue  # e.g. joined through a nameless Looker row to two different names
        first.members.update(second.members)
        first.links.extend([*second.links, link])
        for position in second.members.values():
            owner[position] = ga
        del groups[gb]
    return list(groups.values())


# --------------------------------------------------------------------------------------------
# Rows


def suggestion_rows(records: Sequence[Record], groups: Sequence[Group]) -> list[dict[str, str]]:
    rows = []
    for group in groups:
        picked = {system: records[i] for system, i in group.members.items()}
        sf, ic, lk, jr = (picked.get(s) for s in SYSTEMS)
        name = next((r.name for r in (sf, ic, lk) if r is not None and r.name), "")
        if not name and jr is not None:
            name = jr.name
        segment = ic.segment if ic is not None else ""
        evidence = [
            f"{records[link.a].system}↔{records[link.b].system} {link.confidence:.2f}: "
            + "; ".join(link.evidence)
            for link in group.links
        ]
        if not segment:
            evidence.append("segment: not known to any system, fill in")
        if len(picked) == 1:
            match = "unmatched"
            confidence = ""
        else:
            match = "matched" if sf is not None else "no Salesforce account"
            confidence = f"{min(link.confidence for link in group.links):.2f}"
        rows.append(
            {
                "sf_account_id": sf.id if sf else "",
                "intercom_company_id": ic.id if ic else "",
                "looker_customer_id": lk.id if lk else "",
                "account_name": name,
                "segment": segment,
                "jira_project_key": jr.project if jr else "",
                "jira_component": jr.id if jr else "",
                "confidence": confidence,
                "match": match,
                "evidence": " | ".join(evidence),
            }
        )
    order = {"matched": 0, "no Salesforce account": 1, "unmatched": 2}
    rows.sort(key=lambda r: (order[r["match"]], r["confidence"], r["account_name"].casefold()))
    return rows


def suggest(records: Sequence[Record]) -> list[dict[str, str]]:
    """The proposed mapping rows for ``records`` (pure: no I/O)."""
    usable = [r for r in records if _usable(r)]
    return suggestion_rows(usable, group_records(usable, find_links(usable)))


def _usable(record: Record) -> bool:
    """Ids the mapping would refuse (quotes, control characters) are left for a person."""
    if record.system == "salesforce":
        return True
    if record.system == "jira" and not JIRA_PROJECT_KEY.fullmatch(record.project):
        return False
    return bool(SAFE_TEXT.fullmatch(record.id))


def rows_csv(rows: Sequence[Mapping[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*MAPPING_COLUMNS, *EXTRA_COLUMNS])
    for row in rows:
        writer.writerow([safe_cell(row[c]) for c in (*MAPPING_COLUMNS, *EXTRA_COLUMNS)])
    return out.getvalue()


def write_new(path: Path, text: str, mapping: Path) -> None:
    """Write ``text`` to ``path``, which must not exist and must not be the mapping."""
    if path.resolve() == mapping.resolve():
        raise SuggestError(
            f"refusing to write the suggestion over the mapping itself ({mapping}): "
            "choose another --output and copy the rows you accept"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8", newline="") as handle:
            handle.write(text)
    except FileExistsError:
        raise SuggestError(
            f"{path} exists: the suggestion never overwrites a file; move it or give "
            "another --output"
        ) from None


def check_identifiers(
    projects: Sequence[str], types: Sequence[str], name_field: str | None
) -> None:
    for project in projects:
        if not JIRA_PROJECT_KEY.fullmatch(project):
            raise SuggestError(f"--jira-project {project!r} is not a Jira project key")
    for value in types:
        if not value or any(ord(ch) < 32 for ch in value):
            raise SuggestError(f"--sf-type {value!r} is not a picklist value")
    if name_field is not None and not re.fullmatch(
        r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*", name_field
    ):
        raise SuggestError(f"--looker-name-field {name_field!r} is not a view.field name")


def read_all(
    settings: SourceSettings,
    env: Mapping[str, str],
    *,
    segments: frozenset[str],
    projects: Sequence[str],
    types: Sequence[str],
    look_id: str | None,
    name_field: str | None,
) -> tuple[list[Record], dict[str, int]]:
    """Every system's customers (those with credentials), and how many each gave."""
    check_identifiers(projects, types, name_field)
    read = {
        "salesforce": lambda: read_salesforce(settings, env, types),
        "intercom": lambda: read_intercom(settings, env, segments),
        "looker": lambda: read_looker(settings, env, look_id, name_field),
        "jira": lambda: read_jira(settings, env, projects),
    }
    records: list[Record] = []
    counts: dict[str, int] = {}
    for system in SYSTEMS:
        found = read[system]()
        counts[system] = len(found)
        records.extend(found)
    return records, counts
