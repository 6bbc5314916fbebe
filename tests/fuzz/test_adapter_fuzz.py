"""Every adapter's parser, and normalisation after it, on hostile bodies: the only exceptions
that may escape are the gateway's own 4xx errors (the body is refused as a whole); anything
else — a TypeError, a RecursionError, an OverflowError — would be a 500 in production."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters import build_adapters
from gateway.adapters.healthkit.export import ExportStream, parse_export
from gateway.errors import GatewayError
from gateway.measures.normalise import normalise
from gateway.models import CandidateReading, Identifier, ParsedItem, ParseRejection
from tests.fuzz.strategies import MEDIA_TYPES, json_bodies, ndjson_bodies, xml_bodies

ADAPTERS = build_adapters(max_readings=1_000)
NOW = datetime(2026, 11, 30, tzinfo=UTC)
SUBJECT = Identifier("urn:oid:1.2.156.999.1", "MRN-1")
# GATEWAY_FUZZ_EXAMPLES=5000 for a longer local hunt; the suite's default keeps it to seconds.
FUZZ = settings(
    max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_items(items: object) -> None:
    """What a parser returns: a list of parsed items, each of which normalises without raising."""
    assert isinstance(items, list)
    for item in items:
        assert isinstance(item, CandidateReading | ParseRejection), type(item)
        if isinstance(item, CandidateReading):
            normalise(item, now=NOW)


def assert_client_error(error: GatewayError) -> None:
    assert 400 <= error.status < 500, (type(error).__name__, error.status)


def parse_or_refuse(fmt: str, body: bytes, media_type: str) -> None:
    refused: GatewayError | None = None
    try:
        items = ADAPTERS[fmt].parse(body, media_type)
    except GatewayError as error:
        refused = error
    if refused is None:
        check_items(items)
    else:
        assert_client_error(refused)


@pytest.mark.parametrize("fmt", sorted(ADAPTERS))
@FUZZ
@given(data=st.data())
def test_a_hostile_json_body_is_parsed_or_refused_with_a_4xx(fmt: str, data: st.DataObject) -> None:
    body = data.draw(json_bodies(fmt), label="body")
    media_type = data.draw(
        st.sampled_from([t for t in MEDIA_TYPES[fmt] if "ndjson" not in t]), label="media type"
    )
    parse_or_refuse(fmt, body, media_type)


@pytest.mark.parametrize("fmt", ["native", "fhir"])
@FUZZ
@given(data=st.data())
def test_a_hostile_ndjson_body_is_parsed_or_refused_with_a_4xx(
    fmt: str, data: st.DataObject
) -> None:
    parse_or_refuse(fmt, data.draw(ndjson_bodies(fmt), label="body"), "application/x-ndjson")


@FUZZ
@given(body=xml_bodies(), chunk=st.integers(1, 4096))
def test_a_hostile_export_xml_is_parsed_or_refused_with_a_4xx(body: bytes, chunk: int) -> None:
    # Whole, as `parse_export` reads it, and in small chunks, as an upload arrives.
    def whole() -> list[ParsedItem]:
        return list(parse_export(body, SUBJECT, "fallback", max_readings=1_000))

    def chunked() -> list[ParsedItem]:
        stream = ExportStream(SUBJECT, "fallback", max_readings=1_000)
        items: list[ParsedItem] = []
        for start in range(0, len(body), chunk):
            items.extend(stream.feed(body[start : start + chunk]))
        items.extend(stream.close())
        return items

    for read in (whole, chunked):
        refused: GatewayError | None = None
        try:
            items = read()
        except GatewayError as error:
            refused = error
        if refused is None:
            check_items(items)
        else:
            assert_client_error(refused)


@pytest.mark.parametrize("fmt", sorted(ADAPTERS))
def test_nan_and_infinity_literals_are_invalid_json(fmt: str) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"readings": [{"value": ' + literal + b"}], " + b'"records": [], "x": 1}'
        with pytest.raises(GatewayError) as refused:
            ADAPTERS[fmt].parse(body, "application/json")
        assert refused.value.code == "invalid-json"


@pytest.mark.parametrize("fmt", sorted(ADAPTERS))
def test_ten_thousand_levels_of_nesting_are_refused_not_a_recursion_error(fmt: str) -> None:
    with pytest.raises(GatewayError) as refused:
        ADAPTERS[fmt].parse(b"[" * 10_000 + b"]" * 10_000, "application/json")
    assert refused.value.status == 400


# Found by the properties above: a JSON array or object where a code was expected was looked up
# in a set or dict, and raised TypeError (unhashable) — a 500. Now the reading is rejected.
UNHASHABLE_CODES = {
    "withings": {
        "userid": "1234567",
        "response": {
            "status": 0,
            "body": {
                "timezone": "Europe/Paris",
                "measuregrps": [
                    {
                        "grpid": 1,
                        "attrib": 0,
                        "category": 1,
                        "date": 1764480000,
                        "measures": [{"type": [], "unit": 0, "value": 47}],
                    }
                ],
            },
        },
    },
    "healthconnect": {
        "subject": {"system": "urn:oid:1.2.156.999.1", "value": "MRN-1"},
        "records": [{"type": [], "time": "2025-08-09T09:00:00Z", "zoneOffset": "+00:00"}],
    },
    "omh": {
        "header": {
            "id": "x",
            "creation_date_time": "2024-06-01T00:00:00Z",
            "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
            "acquisition_provenance": {"source_name": "d", "modality": {"a": 1}},
            "user_id": "u",
        },
        "body": {
            "heart_rate": {"value": 60, "unit": "beats/min"},
            "effective_time_frame": {"date_time": "2026-11-30T08:00:00Z"},
        },
    },
}


_OMH = UNHASHABLE_CODES["omh"]
_GLUCOSE = {
    "header": {**_OMH["header"], "acquisition_provenance": {"source_name": "d"}},  # type: ignore[dict-item]
    "body": {
        "blood_glucose": {"value": 95, "unit": "mg/dL"},
        "effective_time_frame": {"date_time": "2026-11-30T08:00:00Z"},
    },
}
_GLUCOSE["header"]["schema_id"] = {"namespace": "omh", "name": "blood-glucose", "version": "4.0"}
UNHASHABLE_CASES = [
    ("withings", UNHASHABLE_CODES["withings"]),
    ("healthconnect", UNHASHABLE_CODES["healthconnect"]),
    ("omh", _OMH),
    ("omh", {**_GLUCOSE, "body": {**_GLUCOSE["body"], "specimen_source": []}}),
    ("omh", {**_GLUCOSE, "body": {**_GLUCOSE["body"], "temporal_relationship_to_meal": {}}}),
    (
        "healthconnect",
        {
            **UNHASHABLE_CODES["healthconnect"],
            "records": [
                {
                    "recordType": "BloodGlucose",
                    "time": "2025-08-09T09:00:00Z",
                    "level": {"inMilligramsPerDeciliter": 92},
                    "specimenSource": [1],
                }
            ],
        },
    ),
]


@pytest.mark.parametrize(("fmt", "document"), UNHASHABLE_CASES)
def test_an_array_or_object_where_a_code_belongs_is_rejected_not_a_crash(
    fmt: str, document: dict[str, object]
) -> None:
    [item] = ADAPTERS[fmt].parse(orjson.dumps(document), "application/json")
    assert isinstance(item, ParseRejection)
    assert item.code in ("invalid-reading", "unsupported-type")


def test_a_bundle_whose_type_is_an_array_is_refused_not_a_crash() -> None:
    with pytest.raises(GatewayError) as refused:
        ADAPTERS["fhir"].parse(b'{"resourceType": "Bundle", "type": []}', "application/json")
    assert refused.value.status == 400
