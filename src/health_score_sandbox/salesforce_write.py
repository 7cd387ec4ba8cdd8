"""The write side of the stand-in Salesforce: Bulk API 2.0 ingest and sObject Collections.

The read-side App (``src/sandbox/salesforce.py``) authenticates, charges the daily allowance and
then hands every request under ``/services/data/vNN.0`` to :meth:`WriteApi.handle`, which answers
the write routes and returns None for anything else:

- ``POST /jobs/ingest`` (create an upsert/insert/update job), ``PUT /jobs/ingest/{id}/batches``
  (``text/csv`` → 201), ``PATCH /jobs/ingest/{id}`` (``UploadComplete`` / ``Aborted``),
  ``GET /jobs/ingest/{id}`` (Open → UploadComplete → InProgress → JobComplete, advanced by polls so
  runs are deterministic), ``GET …/successfulResults/``, ``…/failedResults/``,
  ``…/unprocessedrecords/``, ``DELETE /jobs/ingest/{id}``;
- ``PATCH /composite/sobjects/{Object}/{ExternalIdField}`` (upsert up to 200 records) and
  ``PATCH /composite/sobjects`` (update up to 200 records by Id).

Fields are validated against the object schema read from the project's ``salesforce/`` metadata
(so the stand-in and the deployable metadata cannot drift): unknown field → ``INVALID_FIELD``,
wrong type → ``INVALID_TYPE_ON_FIELD_IN_RECORD``, too long → ``STRING_TOO_LONG``, bad restricted
picklist value → ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``, too many digits →
``NUMBER_OUTSIDE_VALID_RANGE``. :meth:`WriteApi.lock_rows` makes chosen records fail with the
transient ``UNABLE_TO_LOCK_ROW`` a number of times. Written records are kept in
``WriteApi.records[object][external id or Id]`` for tests to inspect.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from health_score_sandbox.server import Request, Response

METADATA_DIR = Path(__file__).resolve().parents[2] / "salesforce"
MD_NS = "{http://soap.sforce.com/2006/04/metadata}"
COLLECTION_LIMIT = 200  # records per sObject Collections call
NULL_MARKER = "#N/A"  # Bulk API 2.0: this cell value sets the field to null

#: Key prefixes for ids the stand-in mints (custom objects get a made-up one, as in an org).
KEY_PREFIXES = {
    "Account": "001",
    "Health_Score__c": "a0H",
    "Churn_Signal__c": "a0C",
    "Health_Alert__c": "a0A",
    "User": "005",
}
JOB_PREFIX = "750"

#: Standard fields every object has (besides Id) that a client may write.
STANDARD_FIELDS: dict[str, dict[str, tuple[str, int | None]]] = {
    "Account": {"Name": ("Text", 255), "Description": ("LongTextArea", 32000)},
}
#: Standard lookups a client may write (object → field → referenced object).
STANDARD_LOOKUPS: dict[str, dict[str, str]] = {"Health_Alert__c": {"OwnerId": "User"}}

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_RE = re.compile(r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$")
_VERSION_RE = re.compile(r"/services/data/(v\d+\.\d+)")


def id18(id15: str) -> str:
    """The 18-character, case-insensitive form of a 15-character Salesforce id."""
    if len(id15) == 18:
        return id15
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, ch in enumerate(id15[start : start + 5]) if ch.isupper())
        suffix += _ID_CHARS[bits]
    return id15 + suffix


def is_valid_id(value: str, prefix: str | None = None) -> bool:
    """Shape of a Salesforce id (15 or 18 chars, checksum right), optionally of one object."""
    if not _ID_RE.match(value):
        return False
    if len(value) == 18 and id18(value[:15]) != value:
        return False
    return prefix is None or value.startswith(prefix)


# -- schema -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field as the metadata describes it."""

    name: str
    label: str
    type: str  # Text, Number, Percent, Date, DateTime, Checkbox, Picklist, Lookup, …
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    external_id: bool = False
    unique: bool = False
    case_sensitive: bool = False
    required: bool = False
    reference_to: str | None = None


@dataclass(frozen=True, slots=True)
class ObjectSchema:
    name: str
    fields: Mapping[str, FieldSpec]

    def field(self, name: str) -> FieldSpec | None:
        """Field API names are case-insensitive in Salesforce."""
        spec = self.fields.get(name)
        if spec is not None:
            return spec
        lowered = name.lower()
        return next((f for k, f in self.fields.items() if k.lower() == lowered), None)


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(f"{MD_NS}{tag}")
    return child.text.strip() if child is not None and child.text else None


def _int(node: ET.Element, tag: str) -> int | None:
    value = _text(node, tag)
    return int(value) if value is not None else None


def _bool(node: ET.Element, tag: str) -> bool:
    return (_text(node, tag) or "false").lower() == "true"


def parse_field(path: Path) -> FieldSpec:
    """A ``*.field-meta.xml`` file as a FieldSpec."""
    root = ET.parse(path).getroot()  # noqa: S314 - the project's own metadata files
    name = _text(root, "fullName") or path.name.removesuffix(".field-meta.xml")
    picklist: tuple[str, ...] = ()
    restricted = False
    value_set = root.find(f"{MD_NS}valueSet")
    if value_set is not None:
        restricted = _bool(value_set, "restricted")
        picklist = tuple(
            _text(v, "fullName") or ""
            for v in value_set.iter(f"{MD_NS}value")
            if _text(v, "fullName") is not None
        )
    kind = _text(root, "type") or "Text"
    return FieldSpec(
        name=name,
        label=_text(root, "label") or name,
        type=kind,
        length=_int(root, "length"),
        precision=_int(root, "precision"),
        scale=_int(root, "scale"),
        picklist=picklist,
        restricted=restricted,
        external_id=_bool(root, "externalId"),
        unique=_bool(root, "unique"),
        case_sensitive=_bool(root, "caseSensitive"),
        required=_bool(root, "required") or kind == "MasterDetail",
        reference_to=_text(root, "referenceTo"),
    )


def load_schema(metadata_dir: Path = METADATA_DIR) -> dict[str, ObjectSchema]:
    """Every object under ``<metadata_dir>/objects``, with its Name field and custom fields."""
    schemas: dict[str, ObjectSchema] = {}
    objects = metadata_dir / "objects"
    for folder in sorted(p for p in objects.iterdir() if p.is_dir()) if objects.is_dir() else []:
        fields: dict[str, FieldSpec] = {}
        for name, (kind, length) in STANDARD_FIELDS.get(folder.name, {}).items():
            fields[name] = FieldSpec(name=name, label=name, type=kind, length=length)
        for name, target in STANDARD_LOOKUPS.get(folder.name, {}).items():
            fields[name] = FieldSpec(name=name, label=name, type="Lookup", reference_to=target)
        object_file = folder / f"{folder.name}.object-meta.xml"
        if object_file.is_file():
            root = ET.parse(object_file).getroot()  # noqa: S314 - the project's own metadata
            name_field = root.find(f"{MD_NS}nameField")
            if name_field is not None and _text(name_field, "type") == "Text":
                fields["Name"] = FieldSpec(
                    name="Name", label=_text(name_field, "label") or "Name", type="Text", length=80
                )
        for path in sorted((folder / "fields").glob("*.field-meta.xml")):
            spec = parse_field(path)
            fields[spec.name] = spec
        schemas[folder.name] = ObjectSchema(folder.name, fields)
    return schemas


# -- validation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordError:
    """One Salesforce error on one record."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    def as_save_error(self) -> dict[str, Any]:
        """Shape used inside sObject Collections SaveResults."""
        return {"statusCode": self.code, "message": self.message, "fields": list(self.fields)}

    def as_bulk_error(self) -> str:
        """Shape of the ``sf__Error`` column of failedResults."""
        return f"{self.code}:{self.message}:{','.join(self.fields)} --"


class RecordRejected(Exception):
    def __init__(self, error: RecordError) -> None:
        self.error = error
        super().__init__(error.message)


_INTEGER_RE = re.compile(r"^[+-]?\d+$")
_TEXT_TYPES = {"Text", "TextArea", "LongTextArea", "Html", "Url", "Email", "Phone", "EncryptedText"}
_NUMBER_TYPES = {"Number", "Percent", "Currency"}


def _type_error(spec: FieldSpec, value: object) -> RecordRejected:
    return RecordRejected(
        RecordError(
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            f"{spec.label}: value not of required type: {value}",
            (spec.name,),
        )
    )


def coerce(spec: FieldSpec, value: object) -> object:
    """The stored value of ``value`` for ``spec`` (None clears), or RecordRejected."""
    if value is None or value == "":
        if spec.required:
            raise RecordRejected(
                RecordError(
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{spec.name}]",
                    (spec.name,),
                )
            )
        if spec.type == "Picklist" and spec.restricted:
            return None
        return None
    kind = spec.type
    if kind in _TEXT_TYPES:
        if not isinstance(value, str | int | float):
            raise _type_error(spec, value)
        text = value if isinstance(value, str) else str(value)
        limit = spec.length or (32768 if kind != "Text" else 255)
        if len(text) > limit:
            raise RecordRejected(
                RecordError(
                    "STRING_TOO_LONG",
                    f"{spec.label}: data value too large: {text} (max length={limit})",
                    (spec.name,),
                )
            )
        return text
    if kind in _NUMBER_TYPES:
        if isinstance(value, bool):
            raise _type_error(spec, value)
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise _type_error(spec, value) from None
        if not number.is_finite():
            raise _type_error(spec, value)
        precision = spec.precision or 18
        scale = spec.scale or 0
        rounded = number.quantize(Decimal(1).scaleb(-scale)) if scale else number.quantize(1)
        digits = len(str(abs(rounded.to_integral_value(rounding=ROUND_DOWN))).lstrip("0"))
        if digits > precision - scale:
            raise RecordRejected(
                RecordError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"{spec.label}: value outside of valid range on numeric field: {value}",
                    (spec.name,),
                )
            )
        return rounded
    if kind == "Checkbox":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise _type_error(spec, value)
    if kind == "Date":
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise _type_error(spec, value) from None
    if kind == "DateTime":
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise _type_error(spec, value) from None
    if kind in ("Picklist", "MultiselectPicklist"):
        text = str(value)
        if spec.restricted and text not in spec.picklist:
            raise RecordRejected(
                RecordError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{spec.label}: bad value for restricted picklist field: {text}",
                    (spec.name,),
                )
            )
        return text
    if kind in ("Lookup", "MasterDetail"):
        text = str(value)
        prefix = KEY_PREFIXES.get(spec.reference_to or "")
        if not is_valid_id(text, prefix):
            raise RecordRejected(
                RecordError(
                    "MALFORMED_ID",
                    f"{spec.label}: id value of incorrect type: {text}",
                    (spec.name,),
                )
            )
        return id18(text)
    return value


# -- jobs -------------------------------------------------------------------------------------

OPEN = "Open"
UPLOAD_COMPLETE = "UploadComplete"
IN_PROGRESS = "InProgress"
JOB_COMPLETE = "JobComplete"
ABORTED = "Aborted"
FAILED = "Failed"
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^"}


@dataclass
class Job:
    id: str
    object: str
    operation: str
    external_id_field: str | None
    line_ending: str
    delimiter: str
    api_version: str
    created: str
    state: str = OPEN
    csv_text: str | None = None
    polls: int = 0
    processed: int = 0
    failed: int = 0
    error_message: str | None = None
    successful: list[tuple[str, bool, Mapping[str, str]]] = field(default_factory=list)
    failures: list[tuple[str, str, Mapping[str, str]]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        version = float(self.api_version.removeprefix("v"))
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": "005000000000001AAA",
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": version,
            "jobType": "V2Ingest",
            "lineEnding": self.line_ending,
            "columnDelimiter": self.delimiter,
            "numberRecordsProcessed": self.processed,
            "numberRecordsFailed": self.failed,
            "retries": 0,
            "totalProcessingTime": 0,
            "apiActiveProcessingTime": 0,
            "apexProcessingTime": 0,
        }
        if self.external_id_field:
            body["externalIdFieldName"] = self.external_id_field
        if self.state == OPEN:
            body["contentUrl"] = f"services/data/{self.api_version}/jobs/ingest/{self.id}/batches"
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body


def _errors(status: int, code: str, message: str) -> Response:
    return Response(status, [{"errorCode": code, "message": message}])


def _csv(columns: list[str], rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


class WriteApi:
    """Bulk API 2.0 ingest and sObject Collections over the project's metadata schema.

    ``polls_in_progress``: how many job-info polls a job answers ``InProgress`` before
    ``JobComplete`` (its records are processed on the first poll after upload completes).
    ``account_ids``: when set, lookups to Accounts outside it fail with
    ``INVALID_CROSS_REFERENCE_KEY`` and Account updates of unknown ids with ``ENTITY_IS_DELETED``.
    """

    def __init__(
        self,
        *,
        metadata_dir: Path = METADATA_DIR,
        polls_in_progress: int = 1,
        account_ids: Iterable[str] | None = None,
        created_date: str = "2026-11-01T06:00:00.000+0000",
    ) -> None:
        self.schema: dict[str, ObjectSchema] = load_schema(metadata_dir)
        self.polls_in_progress = polls_in_progress
        self.account_ids: set[str] | None = (
            {id18(a) for a in account_ids} if account_ids is not None else None
        )
        self.created_date = created_date
        self.records: dict[str, dict[str, dict[str, Any]]] = {}
        self.jobs: dict[str, Job] = {}
        self.write_requests = 0  # requests this API answered (every write route)
        self._by_id: dict[str, tuple[str, str]] = {}  # record Id → (object, key in records)
        self._folded: dict[tuple[str, str], str] = {}  # case-insensitive external ids → key
        self._locks: dict[str, int] = {}
        self._sequence: dict[str, int] = {}
        self._lock = threading.RLock()

    # -- knobs --------------------------------------------------------------------------------

    def lock_rows(self, keys: Mapping[str, int]) -> None:
        """Make the records with these external ids (or Ids) fail with UNABLE_TO_LOCK_ROW.

        The value is how many attempts fail before the record goes through.
        """
        with self._lock:
            self._locks.update(keys)

    # -- routing ------------------------------------------------------------------------------

    @staticmethod
    def endpoint_label(method: str, subpath: str) -> str | None:
        """A stats label with ids folded out, or None when the path is not a write route."""
        parts = [p for p in subpath.split("/") if p]
        if parts[:2] == ["jobs", "ingest"]:
            shape = "/".join(["jobs", "ingest", *(["{id}"] if len(parts) > 2 else []), *parts[3:]])
            return f"{method} /{shape}"
        if parts[:2] == ["composite", "sobjects"]:
            return f"{method} /{'/'.join(parts)}"
        if parts[:1] == ["sobjects"] and len(parts) == 4 and method == "PATCH":
            return f"PATCH /sobjects/{parts[1]}/{parts[2]}/{{value}}"
        return None

    def handle(self, request: Request, subpath: str) -> Response | None:
        """Answer a write route (``subpath`` is what follows ``/services/data/vNN.0``)."""
        parts = [p for p in subpath.split("/") if p]
        if parts[:2] == ["jobs", "ingest"]:
            with self._lock:
                self.write_requests += 1
            return self._ingest(request, parts[2:])
        if parts[:2] == ["composite", "sobjects"] and request.method == "PATCH":
            with self._lock:
                self.write_requests += 1
            if len(parts) == 4:
                return self._collection_upsert(request, parts[2], parts[3])
            if len(parts) == 2:
                return self._collection_update(request)
        if parts[:1] == ["sobjects"] and len(parts) == 4 and request.method == "PATCH":
            with self._lock:
                self.write_requests += 1
            return self._single_upsert(request, parts[1], parts[2], parts[3])
        return None

    def _single_upsert(self, request: Request, obj: str, external: str, value: str) -> Response:
        """``PATCH /sobjects/{Object}/{ExternalIdField}/{value}``: 201 created; updated is 200
        with the same body from API v46.0 on, 204 without a body before."""
        schema = self.schema.get(obj)
        ext_spec = schema.field(external) if schema is not None else None
        if schema is None:
            return _errors(404, "NOT_FOUND", f"The requested resource does not exist: {obj}")
        if ext_spec is None or not ext_spec.external_id:
            return _errors(
                400,
                "INVALID_FIELD",
                f"Field name provided, {external} is not an External ID or indexed field for {obj}",
            )
        try:
            body = request.json()
        except ValueError:
            body = None
        try:
            values = _record_values(body, obj)
            if any(k.lower() == ext_spec.name.lower() for k in values):
                raise RecordRejected(
                    RecordError(
                        "INVALID_FIELD",
                        f"{ext_spec.name} is in the URL and must not be in the body",
                        (ext_spec.name,),
                    )
                )
            record_id, created = self._upsert(
                schema, ext_spec.name, {**values, ext_spec.name: value}, insert=False
            )
        except RecordRejected as exc:
            error = exc.error
            return Response(
                400,
                [{"message": error.message, "errorCode": error.code, "fields": list(error.fields)}],
            )
        result = {"id": record_id, "success": True, "errors": [], "created": created}
        if created:
            return Response(201, result)
        version = _VERSION_RE.search(request.path)
        if version and float(version.group(1)[1:]) < 46:
            return Response(204, None)
        return Response(200, result)

    def stored(self, obj: str, record_id: str) -> dict[str, Any] | None:
        """A record this API wrote, by Id (for ``GET /sobjects/{Object}/{Id}``)."""
        with self._lock:
            where = self._by_id.get(id18(record_id)) if is_valid_id(record_id) else None
            if where is None or where[0] != obj:
                return None
            return dict(self.records[obj][where[1]])

    # -- Bulk API 2.0 -------------------------------------------------------------------------

    def _ingest(self, request: Request, rest: list[str]) -> Response:
        version_match = _VERSION_RE.search(request.path)
        version = version_match.group(1) if version_match else "v62.0"
        if not rest:
            if request.method == "POST":
                return self._create_job(request, version)
            if request.method == "GET":
                with self._lock:
                    jobs = [j.info() for j in self.jobs.values()]
                return Response(200, {"done": True, "records": jobs})
            return _errors(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed")
        with self._lock:
            job = self.jobs.get(rest[0])
        if job is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        if len(rest) == 1:
            if request.method == "GET":
                return Response(200, self._poll(job))
            if request.method == "PATCH":
                return self._change_state(job, request)
            if request.method == "DELETE":
                with self._lock:
                    self.jobs.pop(job.id, None)
                return Response(204)
        elif rest[1] == "batches" and request.method == "PUT":
            return self._upload(job, request)
        elif request.method == "GET" and rest[1] in (
            "successfulResults",
            "failedResults",
            "unprocessedrecords",
        ):
            return self._results(job, rest[1])
        return _errors(404, "NOT_FOUND", "The requested resource does not exist")

    def _create_job(self, request: Request, version: str) -> Response:
        try:
            spec = request.json()
        except ValueError:
            return _errors(400, "JSON_PARSER_ERROR", "Unexpected character in request body")
        if not isinstance(spec, dict):
            return _errors(400, "JSON_PARSER_ERROR", "Expected a JSON object")
        operation = spec.get("operation")
        obj = spec.get("object")
        if operation not in ("insert", "update", "upsert"):
            return _errors(400, "INVALIDJOB", f"Invalid operation: {operation}")
        schema = self.schema.get(str(obj))
        if schema is None:
            return _errors(400, "INVALIDJOB", f"Unable to find object: {obj}")
        if spec.get("contentType", "CSV") != "CSV":
            return _errors(400, "INVALIDJOB", "Only CSV content type is supported")
        line_ending = spec.get("lineEnding", "LF")
        delimiter = spec.get("columnDelimiter", "COMMA")
        if line_ending not in LINE_ENDINGS or delimiter not in DELIMITERS:
            return _errors(400, "INVALIDJOB", "Invalid lineEnding or columnDelimiter")
        external = spec.get("externalIdFieldName")
        if operation == "upsert":
            ext_spec = schema.field(str(external)) if external else None
            if ext_spec is None or not (ext_spec.external_id or ext_spec.name == "Id"):
                return _errors(400, "INVALIDJOB", f"Invalid external ID field: {external} on {obj}")
            external = ext_spec.name
        with self._lock:
            number = self._next("job")
            job = Job(
                id=f"{JOB_PREFIX}{_base62(number, 12)}",
                object=schema.name,
                operation=str(operation),
                external_id_field=str(external) if operation == "upsert" else None,
                line_ending=str(line_ending),
                delimiter=str(delimiter),
                api_version=version,
                created=self.created_date,
            )
            job.id = id18(job.id)
            self.jobs[job.id] = job
        return Response(200, job.info())

    def _upload(self, job: Job, request: Request) -> Response:
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "text/csv":
            return _errors(
                400, "INVALIDCONTENTTYPE", f"Unsupported content type: {content_type or 'none'}"
            )
        with self._lock:
            if job.state != OPEN or job.csv_text is not None:
                return _errors(
                    409,
                    "INVALIDJOBSTATE",
                    "Unable to upload data: the job is not Open or data was already uploaded",
                )
            job.csv_text = request.body.decode("utf-8")
        return Response(201)

    def _change_state(self, job: Job, request: Request) -> Response:
        try:
            body = request.json() or {}
        except ValueError:
            return _errors(400, "JSON_PARSER_ERROR", "Unexpected character in request body")
        state = body.get("state") if isinstance(body, dict) else None
        with self._lock:
            if state == UPLOAD_COMPLETE and job.state == OPEN:
                if job.csv_text is None:
                    job.state = FAILED
                    job.error_message = "InvalidBatch : No data uploaded"
                else:
                    job.state = UPLOAD_COMPLETE
            elif state == ABORTED and job.state in (OPEN, UPLOAD_COMPLETE, IN_PROGRESS):
                job.state = ABORTED
            else:
                return _errors(
                    400, "INVALIDJOBSTATE", f"Invalid state transition from {job.state} to {state}"
                )
            return Response(200, job.info())

    def _poll(self, job: Job) -> dict[str, Any]:
        with self._lock:
            if job.state == UPLOAD_COMPLETE:
                job.state = IN_PROGRESS
                self._process(job)
            elif job.state == IN_PROGRESS:
                job.polls += 1
                if job.polls >= self.polls_in_progress:
                    job.state = JOB_COMPLETE
            return job.info()

    def _process(self, job: Job) -> None:
        assert job.csv_text is not None
        schema = self.schema[job.object]
        reader = csv.reader(
            io.StringIO(job.csv_text, newline=""), delimiter=DELIMITERS[job.delimiter]
        )
        rows = list(reader)
        if not rows:
            job.state, job.error_message = FAILED, "InvalidBatch : Empty CSV"
            return
        header = rows[0]
        job.columns = header
        for column in header:
            if column != "Id" and schema.field(column) is None:
                job.state = FAILED
                job.error_message = f"InvalidBatch : Field name not found : {column}"
                return
        for row in rows[1:]:
            if not row:
                continue
            cells = dict(zip(header, row, strict=False))
            values: dict[str, object] = {}
            for name, cell in cells.items():
                if cell == "":
                    continue  # an empty cell leaves the field as it is
                values[name] = None if cell == NULL_MARKER else cell
            try:
                if job.operation == "update":
                    record_id, created = self._update(schema, values), False
                else:
                    record_id, created = self._upsert(
                        schema,
                        job.external_id_field or "",
                        values,
                        insert=job.operation == "insert",
                    )
            except RecordRejected as exc:
                job.failures.append(("", exc.error.as_bulk_error(), cells))
                job.failed += 1
            else:
                job.successful.append((record_id, created, cells))
            job.processed += 1

    def _results(self, job: Job, kind: str) -> Response:
        with self._lock:
            if kind == "unprocessedrecords":
                rows: list[list[str]] = []
                if job.state in (OPEN, UPLOAD_COMPLETE, ABORTED, FAILED) and job.csv_text:
                    return Response(200, job.csv_text, content_type="text/csv")
                return Response(200, _csv(job.columns, rows), content_type="text/csv")
            if job.state not in (JOB_COMPLETE, FAILED, ABORTED):
                return _errors(
                    400, "INVALIDJOBSTATE", "Results are available once the job has completed"
                )
            if kind == "successfulResults":
                text = _csv(
                    ["sf__Id", "sf__Created", *job.columns],
                    (
                        [rid, "true" if created else "false", *(c.get(k, "") for k in job.columns)]
                        for rid, created, c in job.successful
                    ),
                )
            else:
                text = _csv(
                    ["sf__Id", "sf__Error", *job.columns],
                    (
                        [rid, error, *(c.get(k, "") for k in job.columns)]
                        for rid, error, c in job.failures
                    ),
                )
        return Response(200, text, content_type="text/csv")

    # -- sObject Collections ------------------------------------------------------------------

    def _collection_body(self, request: Request) -> tuple[bool, list[Any]] | Response:
        try:
            body = request.json()
        except ValueError:
            return _errors(400, "JSON_PARSER_ERROR", "Unexpected character in request body")
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return _errors(400, "JSON_PARSER_ERROR", "Expected an object with a records array")
        records: list[Any] = body["records"]
        if len(records) > COLLECTION_LIMIT:
            return _errors(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {COLLECTION_LIMIT} records "
                "into this call",
            )
        return bool(body.get("allOrNone", False)), records

    def _collection_upsert(self, request: Request, obj: str, external: str) -> Response:
        schema = self.schema.get(obj)
        if schema is None:
            return _errors(404, "NOT_FOUND", f"The requested resource does not exist: {obj}")
        ext_spec = schema.field(external)
        if ext_spec is None or not ext_spec.external_id:
            return _errors(
                400,
                "INVALID_FIELD",
                f"Field name provided, {external} is not an External ID or indexed field for {obj}",
            )
        parsed = self._collection_body(request)
        if isinstance(parsed, Response):
            return parsed
        all_or_none, records = parsed

        def one(record: Any) -> tuple[str, bool]:
            values = _record_values(record, obj)
            return self._upsert(schema, ext_spec.name, values, insert=False)

        return self._collection(records, all_or_none, one)

    def _collection_update(self, request: Request) -> Response:
        parsed = self._collection_body(request)
        if isinstance(parsed, Response):
            return parsed
        all_or_none, records = parsed

        def one(record: Any) -> tuple[str, bool]:
            kind = (
                (record.get("attributes") or {}).get("type") if isinstance(record, dict) else None
            )
            schema = self.schema.get(str(kind))
            if schema is None:
                raise RecordRejected(
                    RecordError("INVALID_TYPE", f"sObject type '{kind}' is not supported.")
                )
            values = _record_values(record, schema.name)
            values["Id"] = values.pop("id", values.get("Id"))
            return self._update(schema, values), False

        return self._collection(records, all_or_none, one)

    def _collection(self, records: list[Any], all_or_none: bool, one: Any) -> Response:
        with self._lock:
            snapshot = _copy_records(self.records) if all_or_none else None
            by_id, folded = dict(self._by_id), dict(self._folded)
            results: list[dict[str, Any]] = []
            failed = False
            for record in records:
                try:
                    record_id, created = one(record)
                except RecordRejected as exc:
                    failed = True
                    results.append(
                        {
                            "id": None,
                            "success": False,
                            "errors": [exc.error.as_save_error()],
                            "created": False,
                        }
                    )
                else:
                    results.append(
                        {"id": record_id, "success": True, "errors": [], "created": created}
                    )
            if all_or_none and failed and snapshot is not None:
                self.records, self._by_id, self._folded = snapshot, by_id, folded
                rolled_back = RecordError(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request "
                    "was using AllOrNone header",
                ).as_save_error()
                results = [
                    r
                    if not r["success"]
                    else {"id": None, "success": False, "errors": [rolled_back], "created": False}
                    for r in results
                ]
        # 201 when the call created at least one record, as Salesforce answers upserts.
        created = any(r["success"] and r["created"] for r in results)
        return Response(201 if created else 200, results)

    # -- the writes ---------------------------------------------------------------------------

    def _validate(self, schema: ObjectSchema, values: Mapping[str, object]) -> dict[str, object]:
        clean: dict[str, object] = {}
        for name, value in values.items():
            if name == "Id":
                continue
            if name.endswith("__r") and isinstance(value, dict):
                # A lookup set by the referenced record's external id ({"Key__c": "…"}).
                field_name, record_id = self._reference(schema, name, value)
                clean[field_name] = record_id
                continue
            spec = schema.field(name)
            if spec is None:
                raise RecordRejected(
                    RecordError(
                        "INVALID_FIELD",
                        f"No such column '{name}' on sobject of type {schema.name}",
                    )
                )
            stored = coerce(spec, value)
            if (
                stored is not None
                and spec.type in ("Lookup", "MasterDetail")
                and spec.reference_to == "Account"
                and self.account_ids is not None
                and stored not in self.account_ids
            ):
                raise RecordRejected(
                    RecordError(
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"{spec.label}: id value of incorrect type: {stored}",
                        (spec.name,),
                    )
                )
            clean[spec.name] = stored
        return clean

    def _reference(
        self, schema: ObjectSchema, name: str, value: Mapping[str, object]
    ) -> tuple[str, str]:
        """``Rel__r: {External__c: key}`` → (``Rel__c``, the referenced record's Id)."""
        spec = schema.field(name.removesuffix("__r") + "__c")
        target = self.schema.get(spec.reference_to or "") if spec is not None else None
        if spec is None or target is None or len(value) != 1:
            raise RecordRejected(
                RecordError("INVALID_FIELD", f"No such relationship '{name}' on {schema.name}")
            )
        ((external, key),) = value.items()
        ext_spec = target.field(str(external))
        if ext_spec is None or not ext_spec.external_id:
            raise RecordRejected(
                RecordError(
                    "INVALID_FIELD",
                    f"{external} is not an External ID field of {target.name}",
                    (spec.name,),
                )
            )
        with self._lock:
            table = self.records.get(target.name, {})
            stored = str(key)
            if not ext_spec.case_sensitive:
                stored = self._folded.get((target.name, stored.lower()), stored)
            record = table.get(stored)
        if record is None:
            raise RecordRejected(
                RecordError(
                    "INVALID_FIELD",
                    f"Foreign key external ID: {key} not found for field {ext_spec.name} in "
                    f"entity {target.name}",
                    (spec.name,),
                )
            )
        return spec.name, str(record["Id"])

    def _check_lock(self, key: str) -> None:
        remaining = self._locks.get(key, 0)
        if remaining > 0:
            self._locks[key] = remaining - 1
            raise RecordRejected(
                RecordError(
                    "UNABLE_TO_LOCK_ROW",
                    f"unable to obtain exclusive access to this record or 1 records: {key}",
                )
            )

    def _upsert(
        self, schema: ObjectSchema, external: str, values: Mapping[str, object], *, insert: bool
    ) -> tuple[str, bool]:
        """Create or update one record by external id; (Id, created)."""
        ext_spec = schema.field(external)
        raw_key = values.get(external) if ext_spec is not None else None
        if raw_key is None:
            raw_key = next((v for k, v in values.items() if k.lower() == external.lower()), None)
        if ext_spec is None or raw_key is None or str(raw_key) == "":
            raise RecordRejected(
                RecordError("MISSING_ARGUMENT", f"{external} not specified", (external,))
            )
        key = str(raw_key)
        clean = self._validate(schema, values)
        with self._lock:
            table = self.records.setdefault(schema.name, {})
            stored_key = key
            if not ext_spec.case_sensitive:
                stored_key = self._folded.get((schema.name, key.lower()), key)
            self._check_lock(key)
            existing = table.get(stored_key)
            if existing is not None and insert:
                raise RecordRejected(
                    RecordError(
                        "DUPLICATE_VALUE",
                        f"duplicate value found: {ext_spec.name} duplicates value on record "
                        f"with id: {existing['Id']}",
                        (ext_spec.name,),
                    )
                )
            if existing is None:
                missing = [
                    s.name for s in schema.fields.values() if s.required and s.name not in clean
                ]
                if missing:
                    raise RecordRejected(
                        RecordError(
                            "REQUIRED_FIELD_MISSING",
                            f"Required fields are missing: [{', '.join(missing)}]",
                            tuple(missing),
                        )
                    )
                record_id = self._mint(schema.name)
                table[stored_key] = {"Id": record_id, **clean}
                self._by_id[record_id] = (schema.name, stored_key)
                if not ext_spec.case_sensitive:
                    self._folded[(schema.name, key.lower())] = stored_key
                return record_id, True
            existing.update(clean)
            return str(existing["Id"]), False

    def _update(self, schema: ObjectSchema, values: Mapping[str, object]) -> str:
        """Update one record by Id (Accounts may be known only to the read side)."""
        raw_id = values.get("Id")
        record_id = str(raw_id) if raw_id else ""
        if not is_valid_id(record_id, KEY_PREFIXES.get(schema.name)):
            raise RecordRejected(RecordError("MALFORMED_ID", f"malformed id {record_id}", ("Id",)))
        record_id = id18(record_id)
        clean = self._validate(schema, values)
        with self._lock:
            self._check_lock(record_id)
            where = self._by_id.get(record_id)
            if where is not None:
                self.records[where[0]][where[1]].update(clean)
                return record_id
            known = schema.name == "Account" and (
                self.account_ids is None or record_id in self.account_ids
            )
            if not known:
                raise RecordRejected(RecordError("ENTITY_IS_DELETED", "entity is deleted", ()))
            table = self.records.setdefault(schema.name, {})
            table.setdefault(record_id, {"Id": record_id}).update(clean)
            return record_id

    def _next(self, kind: str) -> int:
        self._sequence[kind] = self._sequence.get(kind, 0) + 1
        return self._sequence[kind]

    def _mint(self, obj: str) -> str:
        prefix = KEY_PREFIXES.get(obj, "a0X")
        return id18(f"{prefix}{_base62(self._next(obj), 12)}")


def _base62(number: int, width: int) -> str:
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return digits.rjust(width, "0")


def _record_values(record: Any, obj: str) -> dict[str, object]:
    if not isinstance(record, dict):
        raise RecordRejected(RecordError("JSON_PARSER_ERROR", "Each record must be an object"))
    kind = (record.get("attributes") or {}).get("type")
    if kind is not None and kind != obj:
        raise RecordRejected(
            RecordError("INVALID_TYPE", f"Record type {kind} does not match {obj}")
        )
    return {k: v for k, v in record.items() if k != "attributes"}


def _copy_records(
    records: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    return {obj: {k: dict(v) for k, v in table.items()} for obj, table in records.items()}
