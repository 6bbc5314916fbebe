"""FHIR R4 search parameters -> a typed query, pure (https://hl7.org/fhir/R4/search.html).

    parse_search(resource_type, parameters, strict=..., now=...) -> SearchRequest

Rules implemented here, each from R4 search.html:
- A parameter repeated is AND; values separated by `,` are OR (§2.1.1.5); `\\,`, `\\|` and
  `\\$` escape those characters (§2.1.1.6).
- token: `[system]|[code]`: `code` any system, `system|code`, `|code` no system (§2.1.1.4.5).
- reference: `[type]/[id]`, `[id]` or an absolute URL ending in `[type]/[id]` (§2.1.1.4.9).
- date: see `gateway.fhir.dates`; quantity: `[prefix][number]|[system]|[code]` (§2.1.1.4.7), the
  number's significant digits giving its implicit range (§2.1.1.4.4).
- Parameters the server does not know are ignored and left out of the `self` link, unless the
  client sent `Prefer: handling=strict`, which makes them an error (§2.1.1.0 "handling"). An
  unknown modifier on a known parameter is always an error ("Servers SHALL reject any search
  request that contains a search parameter with an unsupported modifier"). A parameter R4
  defines for the resource type (gateway.fhir.search_parameters_r4) is not unknown: when it is
  not supported it is refused too, as ignoring a filter widens the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from gateway.errors import BadRequest
from gateway.fhir.dates import DateCondition, InvalidDate, Prefix, parse_date_condition
from gateway.fhir.search_parameters_r4 import R4_SEARCH_PARAMETERS
from gateway.lexical import FHIR_ID, ascii_int, is_ascii_decimal, is_fhir_string

DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 1000
LASTN_MAX: Final = 100
ID_PATTERN: Final = FHIR_ID
_MAX_VALUES: Final = 100  # OR-values in one parameter; bounds the SQL a request can build
_MAX_VALUE_LENGTH: Final = 512


class InvalidSearch(BadRequest):
    """A search the server cannot perform as asked (R4 search.html §2.1.1.0: 400)."""

    code = "invalid-search"


class InvalidCursor(InvalidSearch):
    """A `_cursor` this server did not issue for this search, or one that was altered."""

    code = "invalid-cursor"


class UnsupportedSearchParameter(InvalidSearch):
    """A search parameter FHIR R4 defines for the resource type that this server does not
    support: refused even in lenient mode, since ignoring a filter widens the result."""

    code = "unsupported-search-parameter"


class ParamType(StrEnum):
    TOKEN = "token"  # noqa: S105  (the FHIR search parameter type, not a secret)
    REFERENCE = "reference"
    DATE = "date"
    QUANTITY = "quantity"


# The search parameters of each resource type: the names and types of the R4 base definitions
# (observation.html#search, patient.html#search, device.html#search) this gateway supports.
SEARCH_PARAMETERS: Final[Mapping[str, Mapping[str, ParamType]]] = {
    "Observation": {
        "_id": ParamType.TOKEN,
        "_lastUpdated": ParamType.DATE,
        "patient": ParamType.REFERENCE,
        "subject": ParamType.REFERENCE,
        "code": ParamType.TOKEN,
        "category": ParamType.TOKEN,
        "date": ParamType.DATE,
        "device": ParamType.REFERENCE,
        "status": ParamType.TOKEN,
        "value-quantity": ParamType.QUANTITY,
        "identifier": ParamType.TOKEN,
    },
    "Patient": {"_id": ParamType.TOKEN, "identifier": ParamType.TOKEN},
    "Device": {
        "_id": ParamType.TOKEN,
        "patient": ParamType.REFERENCE,
        "identifier": ParamType.TOKEN,
    },
}
# Chained parameters (search.html §2.1.1.4.13) each resource type supports, as the reference
# parameter they follow: clinics know their patients' identifiers (MRNs), not pseudonyms.
# Any other chain, `_has` or modifier is refused, even without `Prefer: handling=strict`:
# ignoring it would widen the result beyond what the client asked for.
CHAINS: Final[Mapping[str, Mapping[str, str]]] = {
    "Observation": {"patient.identifier": "patient", "subject.identifier": "subject"},
    "Patient": {},
    "Device": {"patient.identifier": "patient"},
}
# The resource type a reference parameter points at.
REFERENCE_TARGETS: Final[Mapping[str, str]] = {
    "patient": "Patient",
    "subject": "Patient",
    "device": "Device",
}
SORTS: Final[Mapping[str, tuple[str, ...]]] = {
    "Observation": ("date", "-date", "_lastUpdated", "-_lastUpdated"),
    "Patient": ("_id",),
    "Device": ("_id",),
}
DEFAULT_SORT: Final[Mapping[str, str]] = {"Observation": "-date", "Patient": "_id", "Device": "_id"}
INCLUDES: Final[Mapping[str, tuple[str, ...]]] = {
    "Observation": ("Observation:patient", "Observation:device"),
    "Patient": (),
    "Device": (),
}
# Result parameters (search.html §2.1.1.x "Modifying Search Results") and format parameters
# (http.html#parameters) understood everywhere. `_cursor` is this server's paging parameter: it
# only ever appears in `next` links the server made.
RESULT_PARAMETERS: Final = frozenset(
    {"_count", "_sort", "_summary", "_total", "_elements", "_include", "_cursor"}
)
FORMAT_PARAMETERS: Final = frozenset({"_format", "_pretty"})


@dataclass(frozen=True, slots=True)
class Token:
    """`system` None: any system; "": no system (`|code`)."""

    system: str | None
    code: str


@dataclass(frozen=True, slots=True)
class Quantity:
    prefix: Prefix
    number: Decimal
    low: Decimal  # the implicit range of `number` (its significant digits), or ap's range
    high: Decimal
    system: str | None
    code: str | None


Value = Token | str | DateCondition | Quantity  # str: the id of a reference


@dataclass(frozen=True, slots=True)
class Clause:
    """One occurrence of a parameter: any of `values` matches (OR)."""

    name: str
    values: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class SearchRequest:
    resource_type: str
    clauses: tuple[Clause, ...]  # all must match (AND)
    sort: str
    count: int
    summary_count: bool = False
    total: bool = False
    elements: tuple[str, ...] | None = None
    includes: tuple[str, ...] = ()
    cursor: str | None = None
    # The parameters understood, in request order, for `self` and `next` links (no _cursor).
    echo: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = field(default=())  # names of parameters left out

    def names(self) -> list[str]:
        """The names of the search parameters used (for audit: never their values)."""
        return sorted({clause.name for clause in self.clauses})

    def values_of(self, name: str) -> list[tuple[Value, ...]]:
        return [clause.values for clause in self.clauses if clause.name == name]


def split_escaped(text: str, separator: str) -> list[str]:
    r"""Split on `separator` except where escaped with `\`; escapes of `,`, `|`, `$` and `\`
    are resolved in the parts."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            if char not in ",|$\\":
                current.append("\\")
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _split_or(raw: str) -> list[str]:
    """Top-level comma split that keeps escapes of `|` for the token split that follows."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in raw:
        if escaped:
            current.append("\\" + char if char != "," else ",")
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def parse_token(text: str) -> Token:
    pieces = split_escaped(text, "|")
    if len(pieces) == 1:
        token = Token(None, pieces[0])
    elif len(pieces) == 2:
        token = Token(pieces[0], pieces[1])
    else:
        raise InvalidSearch("a token is [system]|[code]")
    if not token.code:
        raise InvalidSearch("a token needs a code")
    return token


def parse_reference(text: str, target: str) -> str:
    """The id a reference value names; a reference to another resource type matches nothing,
    so it is returned as an id that cannot exist ("")."""
    segments = text.rstrip("/").split("/")
    if len(segments) == 1:
        resource_id = segments[0]
    else:
        if segments[-2] != target:
            return ""
        resource_id = segments[-1]
    if not ID_PATTERN.fullmatch(resource_id):
        raise InvalidSearch(f"a {target} reference is [{target}/]id with a FHIR id")
    return resource_id


_QUANTITY_PREFIX: Final = re.compile(r"(?P<prefix>eq|ne|gt|lt|ge|le|sa|eb|ap)?(?P<number>.*)")


def parse_quantity(text: str) -> Quantity:
    pieces = split_escaped(text, "|")
    if len(pieces) not in (1, 3):
        raise InvalidSearch("a quantity is [prefix]number[|system|code]")
    match = _QUANTITY_PREFIX.fullmatch(pieces[0])
    if match is None:
        raise InvalidSearch("a quantity is [prefix]number[|system|code]")
    if not is_ascii_decimal(match["number"]):
        raise InvalidSearch("a quantity's number is a decimal")
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        raise InvalidSearch("a quantity's number is a decimal") from None
    if not number.is_finite():
        raise InvalidSearch("a quantity's number is a decimal")
    prefix = Prefix(match["prefix"] or "eq")
    # search.html §2.1.1.4.4: "the implicit precision of the number": 100 is [99.5, 100.5).
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int):
        raise InvalidSearch("a quantity's number is a decimal")
    half = Decimal(5).scaleb(exponent - 1)
    low, high = number - half, number + half
    if prefix is Prefix.AP:
        # "ap ... within 10% of the stated value", and never narrower than the implicit range.
        margin = max(abs(number) * Decimal("0.1"), half)
        low, high = number - margin, number + margin
    system = code = None
    if len(pieces) == 3:
        system, code = pieces[1] or None, pieces[2] or None
    return Quantity(prefix, number, low, high, system, code)


def _parse_value(kind: ParamType, name: str, text: str, now: datetime) -> Value:
    match kind:
        case ParamType.TOKEN:
            return parse_token(text)
        case ParamType.REFERENCE:
            return parse_reference(text, REFERENCE_TARGETS[name])
        case ParamType.DATE:
            try:
                return parse_date_condition(text, now=now)
            except InvalidDate as exc:
                raise InvalidSearch(f"{name}: {exc}") from None
        case ParamType.QUANTITY:
            return parse_quantity(text)


def _count(text: str) -> int:
    count = ascii_int(text)
    if count is None:
        raise InvalidSearch("_count is a non-negative integer")
    # search.html §2.1.1.8.1 "_count": the server may return fewer than asked.
    return min(count, MAX_COUNT)


@dataclass(slots=True)
class _Results:
    """The result parameters of one request, as they are read."""

    resource_type: str
    sort: str
    count: int = DEFAULT_COUNT
    summary_count: bool = False
    total: bool = False
    elements: tuple[str, ...] | None = None
    includes: list[str] = field(default_factory=list)

    def read(self, name: str, modifier: str, raw: str) -> None:
        if modifier and name != "_include":
            raise InvalidSearch(f"{name} takes no modifier")
        match name:
            case "_count":
                self.count = _count(raw)
            case "_sort":
                if raw not in SORTS[self.resource_type]:
                    raise InvalidSearch(
                        f"_sort must be one of {', '.join(SORTS[self.resource_type])}"
                    )
                self.sort = raw
            case "_summary":
                if raw not in ("count", "false"):
                    raise InvalidSearch("_summary supports count and false")
                self.summary_count = raw == "count"
            case "_total":
                if raw not in ("none", "estimate", "accurate"):
                    raise InvalidSearch("_total is none, estimate or accurate")
                # An estimate is allowed to be exact (search.html §2.1.1.8.4).
                self.total = raw != "none"
            case "_elements":
                self.elements = tuple(e for e in (p.strip() for p in raw.split(",")) if e)
            case "_include":
                allowed = INCLUDES[self.resource_type]
                if modifier or raw not in allowed:
                    raise InvalidSearch("_include supports " + (", ".join(allowed) or "nothing"))
                if raw not in self.includes:
                    self.includes.append(raw)


def _or_texts(raw: str) -> list[str]:
    texts = _split_or(raw)
    if len(texts) > _MAX_VALUES:
        raise InvalidSearch(f"at most {_MAX_VALUES} values per parameter")
    return texts


def _chain(resource_type: str, name: str, modifier: str) -> str | None:
    """The supported chain `name` (or `name:Type.param`) stands for; None for a parameter
    without chain, `_has` or modifier on an unknown name. Any other chain, `_has` and a modifier
    of an unknown parameter are refused, strict or not (see CHAINS)."""
    chains = CHAINS[resource_type]
    known = SEARCH_PARAMETERS[resource_type]
    if modifier and name in REFERENCE_TARGETS and "." in modifier:
        target, _, rest = modifier.partition(".")
        name = f"{name}.{rest}" if target == REFERENCE_TARGETS[name] else "."
        modifier = ""
    if name in chains and not modifier:
        return name
    if "." in name or name == "_has" or (modifier and name not in known):
        unsupported = name.partition(".")[0] or "reference"
        raise InvalidSearch(f"{unsupported}: this chain or modifier is not supported")
    return None


def _check_ignorable(resource_type: str, name: str, *, strict: bool) -> None:
    """An unsupported name may be ignored only if R4 does not define it for the resource type
    and the client did not ask for strict handling."""
    if name in R4_SEARCH_PARAMETERS[resource_type]:
        raise UnsupportedSearchParameter(
            f"{resource_type} search parameter {name!r} is not supported (it is refused, "
            "not ignored: the CapabilityStatement lists the supported ones)"
        )
    if strict:
        raise InvalidSearch(f"unknown search parameter {name!r} (Prefer: handling=strict)")


def parse_search(
    resource_type: str,
    parameters: Sequence[tuple[str, str]],
    *,
    strict: bool,
    now: datetime,
) -> SearchRequest:
    known = SEARCH_PARAMETERS[resource_type]
    clauses: list[Clause] = []
    echo: list[tuple[str, str]] = []
    ignored: list[str] = []
    results = _Results(resource_type, DEFAULT_SORT[resource_type])
    cursor: str | None = None

    for key, raw in parameters:
        name, _, modifier = key.partition(":")
        if len(raw) > _MAX_VALUE_LENGTH:
            raise InvalidSearch(f"the value of {name} is too long")
        # The FHIR string rule, as the request-line middleware applies it before this parser:
        # PostgreSQL text cannot hold U+0000 (passed on, Patient?_id=%00 was a 500).
        if not is_fhir_string(key) or not is_fhir_string(raw):
            raise InvalidSearch("search parameters cannot contain control characters (U+0000 …)")
        if name in FORMAT_PARAMETERS:
            continue
        if name == "_cursor":
            cursor = raw
        elif name in RESULT_PARAMETERS:
            results.read(name, modifier, raw)
            echo.append((key, raw))
        elif (chain := _chain(resource_type, name, modifier)) is not None:
            if raw:
                clauses.append(Clause(chain, tuple(parse_token(t) for t in _or_texts(raw) if t)))
                echo.append((key, raw))
        elif name not in known:
            _check_ignorable(resource_type, name, strict=strict)
            ignored.append(name)
        elif modifier:
            raise InvalidSearch(f"modifier :{modifier} of {name} is not supported")
        elif raw:  # search.html: a parameter with an empty value is ignored
            texts = _or_texts(raw)
            values = tuple(_parse_value(known[name], name, text, now) for text in texts if text)
            if values:
                clauses.append(Clause(name, values))
                echo.append((key, raw))

    # search.html: _count=0 asks for the total only.
    summary_count = results.summary_count or results.count == 0
    return SearchRequest(
        resource_type=resource_type,
        clauses=tuple(clauses),
        sort=results.sort,
        count=results.count,
        summary_count=summary_count,
        total=results.total or summary_count,
        elements=results.elements,
        includes=tuple(results.includes),
        cursor=cursor,
        echo=tuple(echo),
        ignored=tuple(ignored),
    )
