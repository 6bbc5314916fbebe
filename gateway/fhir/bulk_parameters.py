"""FHIR Bulk Data Access 2.0 kick-off parameters as an export request: pure, no I/O
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters).

    parse_export_request  the kick-off's parameters (`_outputFormat`, `_since`, `_type`,
                          `_typeFilter`) and its Prefer header -> ExportRequest
    parameters_resource   a POSTed FHIR Parameters resource -> (name, value) pairs

An ExportRequest is stored with its job (`as_json`) and read back by the runner (`from_json`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import orjson

from gateway.errors import BadRequest
from gateway.lexical import is_fhir_string

NDJSON_FORMATS: Final = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
EXPORT_TYPES: Final = ("Patient", "Observation", "Device")
LOINC: Final = "http://loinc.org"
_PARAMETERS: Final = frozenset({"_type", "_since", "_typeFilter", "_outputFormat"})


class InvalidExportRequest(BadRequest):
    code = "invalid-export-request"


# ---------------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class TypeFilter:
    """One `_typeFilter` (`Observation?code=…&category=…`): within it, parameters AND; values of
    one parameter (comma-separated) OR; several `_typeFilter`s OR (Bulk Data 2.0 §_typeFilter)."""

    codes: frozenset[str] | None = None
    categories: frozenset[str] | None = None

    def matches(self, code: str, category: str | None) -> bool:
        if self.codes is not None and code not in self.codes:
            return False
        return self.categories is None or category in self.categories


@dataclass(frozen=True, slots=True)
class ExportRequest:
    url: str
    types: tuple[str, ...]
    since: datetime | None = None
    filters: tuple[TypeFilter, ...] = ()

    @property
    def requested_codes(self) -> frozenset[str] | None:
        """The codes the filters narrow to; None when some filter does not narrow the code."""
        if not self.filters or any(f.codes is None for f in self.filters):
            return None
        return frozenset().union(*(f.codes or () for f in self.filters))

    @property
    def categories(self) -> frozenset[str] | None:
        if not self.filters or any(f.categories is None for f in self.filters):
            return None
        return frozenset().union(*(f.categories or () for f in self.filters))

    def matches(self, code: str, category: str | None) -> bool:
        return not self.filters or any(f.matches(code, category) for f in self.filters)

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "url": self.url,
                "types": list(self.types),
                "since": self.since.isoformat() if self.since else None,
                "filters": [
                    {
                        "codes": sorted(f.codes) if f.codes is not None else None,
                        "categories": sorted(f.categories) if f.categories is not None else None,
                    }
                    for f in self.filters
                ],
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> ExportRequest:
        value = orjson.loads(data)

        def optional(items: list[str] | None) -> frozenset[str] | None:
            return frozenset(items) if items is not None else None

        return cls(
            url=value["url"],
            types=tuple(value["types"]),
            since=datetime.fromisoformat(value["since"]) if value["since"] else None,
            filters=tuple(
                TypeFilter(optional(f["codes"]), optional(f["categories"]))
                for f in value["filters"]
            ),
        )


def _token_values(text: str, parameter: str) -> frozenset[str]:
    values: set[str] = set()
    for item in text.split(","):
        system, bar, code = item.partition("|")
        if not bar:
            system, code = "", system
        if parameter == "code" and system not in ("", LOINC):
            raise InvalidExportRequest("_typeFilter code takes LOINC codes (http://loinc.org|…)")
        if not code or not re.fullmatch(r"[A-Za-z0-9.-]{1,64}", code):
            raise InvalidExportRequest(f"_typeFilter {parameter} values are codes")
        values.add(code)
    return frozenset(values)


def _type_filter(text: str) -> TypeFilter:
    resource, question, query = text.partition("?")
    if resource != "Observation" or not question:
        raise InvalidExportRequest("_typeFilter supports Observation?code=… and ?category=…")
    codes: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    for part in query.split("&"):
        name, equals, value = part.partition("=")
        if not equals or not value:
            raise InvalidExportRequest("a _typeFilter parameter needs a value")
        if name == "code":
            found = _token_values(value, "code")
            codes = found if codes is None else codes & found
        elif name == "category":
            found = _token_values(value, "category")
            categories = found if categories is None else categories & found
        else:
            raise InvalidExportRequest("_typeFilter supports the code and category parameters")
    return TypeFilter(codes, categories)


def parse_export_request(
    parameters: Sequence[tuple[str, str]], *, prefer: str | None, url: str
) -> ExportRequest:
    """The kick-off parameters (query string, or a POSTed Parameters resource) as a request."""
    # Bulk Data 2.0 kick-off: "Prefer: respond-async" is required.
    if "respond-async" not in (prefer or "").replace(" ", "").split(","):
        raise InvalidExportRequest("the kick-off request needs the header Prefer: respond-async")
    types: list[str] = []
    since: datetime | None = None
    filters: list[TypeFilter] = []
    for name, value in parameters:
        # A POSTed Parameters resource is JSON, which can carry "\u0000": the request line's
        # check (gateway.web.request_line) covers the query only.
        if not is_fhir_string(value):
            raise InvalidExportRequest(
                "kick-off parameter values must not contain control characters"
            )
        if name not in _PARAMETERS:
            raise InvalidExportRequest(
                f"supported kick-off parameters: {', '.join(sorted(_PARAMETERS))}"
            )
        if name == "_outputFormat":
            if value not in NDJSON_FORMATS:
                raise InvalidExportRequest(
                    f"_outputFormat must be one of {', '.join(sorted(NDJSON_FORMATS))}"
                )
        elif name == "_type":
            for resource in value.split(","):
                if resource.strip() not in EXPORT_TYPES:
                    raise InvalidExportRequest("_type supports Patient, Observation and Device")
                types.append(resource.strip())
        elif name == "_since":
            since = _instant(value)
        else:
            filters.append(_type_filter(value))
    if filters and types and "Observation" not in types:
        raise InvalidExportRequest("_typeFilter on Observation needs Observation in _type")
    return ExportRequest(
        url=url,
        # No _type: "all supported resources within the scope of the client authorization"
        # (Bulk Data 2.0 kick-off), which `kick_off` resolves against the token.
        types=tuple(t for t in EXPORT_TYPES if t in types),
        since=since,
        filters=tuple(filters),
    )


def parameters_resource(body: object) -> list[tuple[str, str]]:
    """POST kick-off: a FHIR Parameters resource -> (name, value) pairs (Bulk Data 2.0)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidExportRequest("a POST kick-off takes a FHIR Parameters resource")
    found: list[tuple[str, str]] = []
    for parameter in body.get("parameter") or []:
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise InvalidExportRequest("each parameter needs a name")
        values = [v for k, v in parameter.items() if k.startswith("value") and isinstance(v, str)]
        if len(values) != 1:
            raise InvalidExportRequest("each parameter needs one string-like value")
        found.append((parameter["name"], values[0]))
    return found


def _instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidExportRequest("_since is a FHIR instant with a time zone") from None
    if moment.tzinfo is None:
        raise InvalidExportRequest("_since is a FHIR instant with a time zone")
    return moment
