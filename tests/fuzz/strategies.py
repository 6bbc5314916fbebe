"""Hypothesis strategies for hostile request bodies, per input format.

Bodies come from three sources: random JSON, mutations of the formats' published samples
(`tests/fixtures/`: the payloads most likely to get deep into a parser), and raw text tricks that
no JSON encoder would produce (NaN/Infinity literals, duplicate keys, 10 000 levels of nesting,
lone surrogates, truncation). Documents are written by `encode` below rather than `json.dumps`,
so a mutation can put any of those anywhere in an otherwise valid document.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.adapters.omh.samples import data_point, sample_keys
from tests.helpers import blood_pressure, reading, steps

FIXTURES = Path(__file__).parents[1] / "fixtures"
DEPTH = 10_000

# --- raw JSON text ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text inserted as it is (a NaN literal, 10 000 nested arrays)."""

    text: str


@dataclass(frozen=True)
class Duplicated:
    """An object written with a repeated key: `{"k": first, ..., "k": second}`."""

    pairs: tuple[tuple[str, Any], ...]


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def encode(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Duplicated):
        return "{" + ", ".join(f"{json.dumps(k)}: {encode(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(encode(v) for v in value) + "]"
    # NaN and the infinities as the literals JavaScript writes (not JSON: RFC 8259 §6); any
    # other scalar as json.dumps writes it (ints of any size, lone surrogates as \ud800).
    if isinstance(value, float) and str(value) in _NON_FINITE:
        return _NON_FINITE[str(value)]
    return json.dumps(value)


def as_bytes(value: Any) -> bytes:
    return encode(value).encode("utf-8", "surrogatepass")


# --- hostile scalars --------------------------------------------------------------------------

EXTREME_NUMBERS: list[Any] = [
    10**400,
    -(10**400),
    2**63,
    -(2**63) - 1,
    2**64,
    1e308,
    -1e308,
    5e-324,
    -0.0,
    0,
    Raw("1e400"),
    Raw("-1e400"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("0." + "0" * 5000 + "1"),
    Raw("1" + "0" * 5000),
]

NASTY_STRINGS: list[Any] = [
    "",
    " ",
    "\u0000",
    "\ud800",  # a lone surrogate: not valid Unicode text
    "\u202eevil",  # right-to-left override
    "\ufeff",
    "\U0001d518\U0001d52b\U0001d526" * 3000,  # astral-plane letters (Fraktur)
    "患者-张伟-" * 500,
    "a" * 100_000,
    "' OR 1=1 --",
    "'); DROP TABLE observations; --",
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "x\r\nSet-Cookie: injected=1",
    "%0d%0aX-Injected: 1",
    "${jndi:ldap://127.0.0.1/x}",
    "<script>alert(1)</script>",
    "2026-11-30T08:00:00+08:00",
    "2026-02-30T08:00:00+08:00",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-14:00",
    "2026-11-30T08:00:00+99:99",
    "2026-11-30 08:00:00 +0800",
    "1e308",
    "NaN",
    # Control characters (PostgreSQL text/jsonb refuse NUL) and digits int() reads but no wire
    # format writes: superscript three, Arabic-Indic, fullwidth, Devanagari.
    "a\u0000b",
    "\u0001",
    "x\u001fy",
    "\u007f",
    "\u00b3",
    "\u0661\u0662",
    "\uff11",
    "\u0967",
]

# Text for path segments and query values: the same classes, percent-encoded by the client.
URL_HOSTILE = ["a\u0000b", "\u0000", "\u0001", "x\u001fy", "\u00b3", "\u0661", "\uff11", "1\u00b9"]
URL_TEXT = st.one_of(
    st.sampled_from(URL_HOSTILE),
    st.sampled_from([t for t in NASTY_STRINGS if len(t) < 200]),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Cc"]), min_size=1, max_size=4),
)


# --- content codings --------------------------------------------------------------------------


@st.composite
def content_encoded(draw: st.DrawFn, body: bytes) -> tuple[str, bytes]:
    """(Content-Encoding, bytes): `body` sent plain, properly compressed, compressed then cut or
    spliced, not compressed at all under a coding, or under a coding the gateway does not take."""
    coding = draw(
        st.sampled_from(
            ["gzip", "deflate", "gzip", "GZIP", "identity", "x-gzip", "gzip, gzip", "compress"]
        )
    )
    if coding in ("identity", "x-gzip", "gzip, gzip", "compress"):
        return coding, body
    packed = gzip.compress(body) if coding.lower() == "gzip" else zlib.compress(body)
    damage = draw(st.sampled_from(["plain", "splice", "cut", "none"]))
    if damage == "cut":
        packed = packed[: draw(st.integers(0, max(len(packed) - 1, 0)))]
    elif damage == "splice":
        at = draw(st.integers(0, len(packed)))
        packed = packed[:at] + draw(st.binary(min_size=1, max_size=8)) + packed[at:]
    elif damage == "plain":
        packed = body
    return coding, packed


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EXTREME_NUMBERS),
    st.text(max_size=40),
    st.sampled_from(NASTY_STRINGS),
)


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    """Random JSON-ish values whose object keys are often ones the parsers look for."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=12)) if keys else st.text(max_size=12)
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(key, inner, max_size=5)
        ),
        max_leaves=25,
    )


# --- mutations of valid documents -------------------------------------------------------------

Path_ = tuple[Any, ...]


def _paths(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _replace(document: Any, path: Path_, new: Any) -> Any:
    if not path:
        return new
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return document


def _drop(document: Any, path: Path_) -> Any:
    if not path:
        return document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return document


def _get(document: Any, path: Path_) -> Any:
    for step in path:
        document = document[step]
    return document


def keys_of(documents: list[Any]) -> list[str]:
    found: set[str] = set()
    for document in documents:
        for path in _paths(document):
            found.update(step for step in path if isinstance(step, str))
    return sorted(found)


ACTIONS = ("drop", "swap", "extreme", "nasty", "deep", "duplicate", "grow")
# Mutations that keep the body valid JSON, so it gets past the parser into the rest of the path.
GENTLE = ("drop", "swap", "nasty", "duplicate", "grow")


@st.composite
def mutated(
    draw: st.DrawFn,
    seeds: list[Any],
    keys: list[str],
    actions: tuple[str, ...] = ACTIONS,
    most: int = 4,
) -> Any:
    """A seed document with one to `most` mutations at random places in it."""
    document = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, most))):
        path = draw(st.sampled_from(list(_paths(document))))
        action = draw(st.sampled_from(actions))
        if action == "drop":
            document = _drop(document, path)
        elif action == "swap":
            document = _replace(document, path, draw(json_values(keys)))
        elif action == "extreme":
            document = _replace(document, path, draw(st.sampled_from(EXTREME_NUMBERS)))
        elif action == "nasty":
            document = _replace(document, path, draw(st.sampled_from(NASTY_STRINGS)))
        elif action == "deep":
            opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
            document = _replace(document, path, Raw(opener * DEPTH + "1" + closer * DEPTH))
        elif action == "duplicate":
            target = _get(document, path)
            if isinstance(target, dict) and target:
                name = draw(st.sampled_from(sorted(target)))
                pairs = (*target.items(), (name, draw(json_values(keys))))
                document = _replace(document, path, Duplicated(tuple(pairs)))
        elif action == "grow":
            target = _get(document, path)
            if isinstance(target, list) and target:
                document = _replace(document, path, target * draw(st.integers(2, 50)))
        if isinstance(document, Raw | Duplicated):
            break  # nothing left to navigate into
    return document


# --- byte-level tricks ------------------------------------------------------------------------


@st.composite
def mangled(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed's bytes truncated, spliced with junk, prefixed with a BOM, or re-encoded."""
    body = draw(st.sampled_from(seeds))
    action = draw(st.sampled_from(["truncate", "splice", "bom", "utf16", "junk", "nul"]))
    if action == "truncate":
        return body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    if action == "splice":
        at = draw(st.integers(0, len(body)))
        return body[:at] + draw(st.binary(min_size=1, max_size=16)) + body[at:]
    if action == "bom":
        return b"\xef\xbb\xbf" + body
    if action == "utf16":
        return body.decode("utf-8", "replace").encode("utf-16")
    if action == "nul":
        return body.replace(b'"', b'"\x00', 1)
    return draw(st.binary(max_size=256))


def raw_text() -> st.SearchStrategy[bytes]:
    """Bodies no encoder writes."""
    return st.sampled_from(
        [
            b"",
            b"null",
            b"NaN",
            b"[NaN]",
            b'{"readings": [Infinity]}',
            b"[" * DEPTH + b"]" * DEPTH,
            b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
            b'"\\ud800"',
            b'{"a": 1, "a": 2}',
            b"\xff\xfe\xfd",
            b"1" * 100_000,
            b"\n" * 1000,
            b'{"readings": [' + b"{}," * 20_000 + b"{}]}",
        ]
    )


# --- seeds per format -------------------------------------------------------------------------


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _native_seeds() -> list[Any]:
    single = reading("MRN-1", record_id="r-1", vendor_time="2026-11-30T08:00:05+08:00")
    return [
        single,
        {"readings": [single, blood_pressure("MRN-1", 128, 82), steps("MRN-1", 900)]},
    ]


def _withings_seeds() -> list[Any]:
    responses = [
        _json(path)
        for path in sorted((FIXTURES / "withings").glob("*.json"))
        if isinstance(_json(path), dict)
    ]
    return [{"userid": "1234567", "response": response} for response in responses]


def _omh_seeds() -> list[Any]:
    points = [data_point(key, "Pass") for key in sample_keys("Pass")]
    ieee = _json(FIXTURES / "omh" / "ieee" / "constructed" / "physical-activity-steps.json")
    return [*points[::3], ieee, points[:5]]  # single data points, and an array of them


def _healthkit_seeds() -> list[Any]:
    return [_json(FIXTURES / "healthkit" / "bridge-samples.json")]


def _healthconnect_seeds() -> list[Any]:
    subject = {"system": "urn:oid:1.2.156.999.1", "value": "MRN-1"}
    return [
        {"subject": subject, **_json(path)}
        for path in sorted((FIXTURES / "healthconnect").glob("*.json"))
    ]


def _fhir_seeds() -> list[Any]:
    paths = [
        *sorted((FIXTURES / "fhir-r4").glob("*.json")),
        *sorted((FIXTURES / "phd").glob("*.json")),
    ]
    return [_json(path) for path in sorted(paths)]


JSON_SEEDS: dict[str, list[Any]] = {
    "native": _native_seeds(),
    "withings": _withings_seeds(),
    "omh": _omh_seeds(),
    "healthkit": _healthkit_seeds(),
    "healthconnect": _healthconnect_seeds(),
    "fhir": _fhir_seeds(),
}

MEDIA_TYPES: dict[str, list[str]] = {
    "native": ["application/json", "application/x-ndjson"],
    "withings": ["application/json"],
    "omh": ["application/json"],
    "healthkit": ["application/json"],
    "healthconnect": ["application/json"],
    "fhir": ["application/json", "application/fhir+json", "application/x-ndjson"],
}


def json_bodies(fmt: str) -> st.SearchStrategy[bytes]:
    """Every kind of hostile body for one JSON format."""
    seeds = JSON_SEEDS[fmt]
    keys = keys_of(seeds)
    seed_bytes = [as_bytes(seed) for seed in seeds]
    return st.one_of(
        mutated(seeds, keys).map(as_bytes),
        json_values(keys).map(as_bytes),
        mangled(seed_bytes),
        raw_text(),
    )


def gentle_json_bodies(fmt: str) -> st.SearchStrategy[bytes]:
    """One JSON-preserving mutation of a sample: mostly well-formed, often storable."""
    seeds = JSON_SEEDS[fmt]
    return mutated(seeds, keys_of(seeds), GENTLE, most=1).map(as_bytes)


def ndjson_bodies(fmt: str) -> st.SearchStrategy[bytes]:
    """NDJSON: lines of (mutated) single documents, with blank and broken lines mixed in."""
    seeds = [s for s in JSON_SEEDS[fmt] if isinstance(s, dict) and "readings" not in s]
    keys = keys_of(seeds)
    line = st.one_of(
        mutated(seeds, keys).map(as_bytes), st.sampled_from([b"", b"  ", b"{", b"NaN"])
    )
    return st.lists(line, min_size=0, max_size=8).map(b"\n".join)


# --- Apple Health export.xml ------------------------------------------------------------------

XML_SEEDS = [path.read_bytes() for path in sorted((FIXTURES / "healthkit").glob("*.xml"))]
_ATTRIBUTE = re.compile(rb'(value|unit|startDate|endDate|type|device|sourceName)="[^"]*"')

XML_TRICKS = [
    b'<?xml version="1.0"?><!DOCTYPE HealthData [<!ENTITY x "y">]><HealthData>&x;</HealthData>',
    b'<?xml version="1.0"?><!DOCTYPE HealthData SYSTEM "file:///etc/passwd"><HealthData/>',
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY % p SYSTEM "http://127.0.0.1/">%p;]><d/>',
    b"<HealthData>" + b"<a>" * DEPTH + b"</a>" * DEPTH + b"</HealthData>",
    b"<HealthData>" + b"<Record/>" * 5000 + b"</HealthData>",
    b"",
    b"<",
    b"\xff\xfe<\x00H\x00",
    b"<NotHealthData/>",
]


def _xml_attribute(value: Any) -> bytes:
    text = value.text if isinstance(value, Raw) else str(value)
    escaped = text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return escaped.encode("utf-8", "surrogatepass")


@st.composite
def _xml_mutated(draw: st.DrawFn) -> bytes:
    body = draw(st.sampled_from(XML_SEEDS))
    matches = list(_ATTRIBUTE.finditer(body))
    for _ in range(draw(st.integers(1, 4))):
        match = draw(st.sampled_from(matches))
        value = draw(st.one_of(st.sampled_from(EXTREME_NUMBERS), st.sampled_from(NASTY_STRINGS)))
        new = match.group(1) + b'="' + _xml_attribute(value) + b'"'
        body = body[: match.start()] + new + body[match.end() :]
        matches = list(_ATTRIBUTE.finditer(body))
    return body


def xml_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(_xml_mutated(), mangled(XML_SEEDS), st.sampled_from(XML_TRICKS))
