from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters import Adapter, TooManyReadings, build_adapters
from gateway.adapters.native import NativeAdapter
from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.measures import MEASURES, normalise
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    Reading,
    Rejection,
    RejectionCode,
)

SCHEMA_PATH = Path(__file__).parents[3] / "schemas" / "native-ingest.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)
# The same document with `#/$defs/reading` as its root: what each NDJSON line must satisfy.
READING_VALIDATOR = jsonschema.Draft202012Validator(
    {k: v for k, v in SCHEMA.items() if k not in {"oneOf", "examples"}}
    | {"$ref": "#/$defs/reading"}
)

JSON = "application/json"
NDJSON = "application/x-ndjson"
SHANGHAI = timezone(timedelta(hours=8))
DELETE = object()
CANARY = "CANARY-4711"
NUMBER_CANARY = 87.654321


def heart_rate(**changes: object) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "subject": {"system": "urn:oid:1.2.156.112604.1.2.1", "value": "MRN-1"},
        "device": {"id": "SN-1", "model": "Watch 5", "manufacturer": "Acme"},
        "type": "heart-rate",
        "value": 72,
        "unit": "/min",
        "time": "2026-11-30T08:00:00+08:00",
        "record_id": "vendor-rec-1",
        "vendor_time": "2026-11-30T00:00:05Z",
        "zone": "cn",
    }
    return _changed(reading, changes)


def blood_pressure(**changes: object) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "subject": {"system": "urn:oid:1.2.156.112604.1.2.1", "value": "MRN-1"},
        "device": {"id": "SN-2"},
        "type": "blood-pressure",
        "components": {
            "systolic": {"value": 121, "unit": "mm[Hg]"},
            "diastolic": {"value": 79, "unit": "mm[Hg]"},
        },
        "time": "2026-11-30T08:05:00+08:00",
    }
    return _changed(reading, changes)


def _changed(reading: dict[str, Any], changes: dict[str, object]) -> dict[str, Any]:
    """Apply changes keyed by dotted paths written with '__', e.g. subject__value=..."""
    result = copy.deepcopy(reading)
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        target = result
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return result


def parse(body: object, *, media_type: str = JSON, max_readings: int = 10_000) -> list[ParsedItem]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return NativeAdapter(max_readings=max_readings).parse(raw, media_type)


def parse_one(reading: object) -> ParsedItem:
    (item,) = parse(reading)
    return item


# --- the adapter and the registry ---------------------------------------------------------------


def test_the_native_adapter_describes_itself() -> None:
    adapter: Adapter = NativeAdapter()
    assert (adapter.name, adapter.version) == ("native", "1")
    assert adapter.media_types == frozenset({JSON, NDJSON})


def test_every_registered_format_is_reachable_by_its_own_name() -> None:
    adapters = build_adapters(max_readings=5)
    assert isinstance(adapters["native"], NativeAdapter)
    assert {name: adapter.name for name, adapter in adapters.items()} == {n: n for n in adapters}


def test_a_single_reading_becomes_one_candidate() -> None:
    item = parse_one(heart_rate())
    assert item == CandidateReading(
        subject=Identifier("urn:oid:1.2.156.112604.1.2.1", "MRN-1"),
        device=DeviceInfo("SN-1", "Watch 5", "Acme"),
        measure="heart-rate",
        quantities={"value": Quantity(72.0, "/min")},
        start=datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI),
        end=None,
        vendor_record_id="vendor-rec-1",
        vendor_time=datetime(2026, 11, 30, 0, 0, 5, tzinfo=UTC),
        offset_assumed=False,
        declared_zone="cn",
    )
    assert isinstance(item, CandidateReading)
    assert item.start.utcoffset() == timedelta(hours=8)


def test_a_panel_reading_carries_its_components() -> None:
    item = parse_one(blood_pressure())
    assert isinstance(item, CandidateReading)
    assert item.quantities == {
        "systolic": Quantity(121.0, "mm[Hg]"),
        "diastolic": Quantity(79.0, "mm[Hg]"),
    }
    assert item.device == DeviceInfo("SN-2")
    assert (item.vendor_record_id, item.vendor_time, item.declared_zone) == (None, None, None)


def test_an_interval_reading_carries_start_and_end() -> None:
    steps = heart_rate(
        type="step-count",
        value=1234,
        unit="{steps}",
        time=DELETE,
        start="2026-11-30T08:00:00+08:00",
        end="2026-11-30T09:00:00.5+08:00",
    )
    item = parse_one(steps)
    assert isinstance(item, CandidateReading)
    assert item.start == datetime(2026, 11, 30, 8, tzinfo=SHANGHAI)
    assert item.end == datetime(2026, 11, 30, 9, 0, 0, 500000, tzinfo=SHANGHAI)


def test_optional_fields_may_be_null() -> None:
    item = parse_one(heart_rate(record_id=None, vendor_time=None, zone=None, device__model=None))
    assert isinstance(item, CandidateReading)
    assert (item.vendor_record_id, item.vendor_time, item.declared_zone) == (None, None, None)
    assert item.device.model is None


def test_unknown_top_level_keys_are_ignored() -> None:
    item = parse_one(heart_rate(firmware="2.1", context={"activity": "rest"}))
    assert isinstance(item, CandidateReading)


def test_a_time_without_offset_is_kept_naive_for_normalise_to_reject() -> None:
    item = parse_one(heart_rate(time="2026-11-30T08:00:00"))
    assert isinstance(item, CandidateReading)
    assert item.start.tzinfo is None
    result = normalise(item, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert isinstance(result, Rejection)
    assert result.code is RejectionCode.MISSING_OFFSET


def test_an_unknown_type_is_left_for_normalise() -> None:
    item = parse_one(heart_rate(type="blood-alcohol"))
    assert isinstance(item, CandidateReading)
    result = normalise(item, now=datetime(2026, 12, 1, tzinfo=UTC))
    assert isinstance(result, Rejection)
    assert result.code is RejectionCode.UNSUPPORTED_TYPE


def test_a_batch_keeps_order_and_rejects_items_one_by_one() -> None:
    items = parse({"readings": [heart_rate(), heart_rate(value="72"), blood_pressure()]})
    assert [type(i) for i in items] == [CandidateReading, ParseRejection, CandidateReading]
    assert items[1] == ParseRejection(
        RejectionCode.INVALID_READING, "readings[1].value must be a JSON number"
    )


def test_a_batch_item_that_is_not_an_object_is_rejected_alone() -> None:
    items = parse({"readings": [heart_rate(), 42, None]})
    assert isinstance(items[0], CandidateReading)
    assert items[1:] == [
        ParseRejection(RejectionCode.INVALID_READING, "readings[1] must be a JSON object"),
        ParseRejection(RejectionCode.INVALID_READING, "readings[2] must be a JSON object"),
    ]


def test_ndjson_has_one_reading_per_non_empty_line() -> None:
    body = b"\n".join(
        [orjson.dumps(heart_rate()), b"", orjson.dumps(blood_pressure()) + b"\r", b"  ", b""]
    )
    items = parse(body, media_type=NDJSON)
    assert [type(i) for i in items] == [CandidateReading, CandidateReading]


def test_an_ndjson_reading_of_the_wrong_shape_is_rejected_with_its_line_number() -> None:
    body = orjson.dumps(heart_rate()) + b"\n\n" + orjson.dumps(heart_rate(subject="MRN-1"))
    items = parse(body, media_type=NDJSON)
    assert items[1] == ParseRejection(
        RejectionCode.INVALID_READING, "line 3: subject must be a JSON object"
    )


@pytest.mark.parametrize("media_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_media_type_parameters_and_case_do_not_matter(media_type: str) -> None:
    assert isinstance(parse(heart_rate(), media_type=media_type)[0], CandidateReading)


def test_at_most_max_readings_are_accepted() -> None:
    assert len(parse({"readings": [heart_rate()] * 3}, max_readings=3)) == 3
    body = b"\n".join([orjson.dumps(heart_rate())] * 3)
    assert len(parse(body, media_type=NDJSON, max_readings=3)) == 3


# --- top-level errors (the whole request is refused) --------------------------------------------


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'{"readings": [', b"\xff\xfe", b"NaN", b'{"value": 1e999}']
)
def test_a_body_that_is_not_json_is_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidJSON) as raised:
        parse(body)
    assert raised.value.code == "invalid-json"
    assert raised.value.status == 400


@pytest.mark.parametrize(
    "body",
    [
        [heart_rate()],
        42,
        "reading",
        None,
        {"readings": []},
        {"readings": {}},
        {"readings": None},
        {"readings": heart_rate()},
    ],
)
def test_a_body_that_is_not_the_documented_shape_is_a_bad_request(body: object) -> None:
    with pytest.raises(BadRequest) as raised:
        parse(body)
    assert type(raised.value) is BadRequest
    assert raised.value.code == "invalid-body"


def test_too_many_readings_are_refused() -> None:
    with pytest.raises(TooManyReadings) as raised:
        parse({"readings": [heart_rate()] * 3}, max_readings=2)
    assert (raised.value.status, raised.value.code) == (400, "too-many-readings")
    assert "at most 2 readings" in raised.value.message


def test_too_many_ndjson_lines_are_refused() -> None:
    body = b"\n".join([orjson.dumps(heart_rate())] * 3)
    with pytest.raises(TooManyReadings):
        parse(body, media_type=NDJSON, max_readings=2)


def test_an_ndjson_line_that_is_not_json_names_its_line_number() -> None:
    body = orjson.dumps(heart_rate()) + b"\n\n{" + CANARY.encode() + b"\n"
    with pytest.raises(InvalidJSON) as raised:
        parse(body, media_type=NDJSON)
    assert raised.value.message == "line 3 is not valid JSON"


@pytest.mark.parametrize("body", [b"", b"\n\n", b" \r\n"])
def test_an_ndjson_body_without_readings_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse(body, media_type=NDJSON)


def test_other_media_types_are_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType):
        parse(heart_rate(), media_type="text/csv")


# --- invalid readings ---------------------------------------------------------------------------

MUST_BE_TIMESTAMP = (
    "must be an RFC 3339 date-time with a UTC offset, e.g. 2026-11-30T08:00:00+08:00"
)

# (reading, message, whether the JSON Schema can express the rule)
INVALID: list[tuple[dict[str, Any], str, bool]] = [
    (heart_rate(subject=DELETE), "subject must be a JSON object", True),
    (heart_rate(subject=CANARY), "subject must be a JSON object", True),
    (heart_rate(subject__value=DELETE), "subject.value must be a string of 1-256 characters", True),
    (heart_rate(subject__value=4711), "subject.value must be a string of 1-256 characters", True),
    (heart_rate(subject__value=""), "subject.value must be a string of 1-256 characters", True),
    (
        heart_rate(subject__value="M" * 257),
        "subject.value must be a string of 1-256 characters",
        True,
    ),
    (heart_rate(subject__system=None), "subject.system must be a string of 1-256 characters", True),
    (heart_rate(subject__mrn=CANARY), "subject may only have the fields system, value", True),
    (heart_rate(device=DELETE), "device must be a JSON object", True),
    (heart_rate(device__id=DELETE), "device.id must be a string of 1-256 characters", True),
    (heart_rate(device__id=12345), "device.id must be a string of 1-256 characters", True),
    (heart_rate(device__model=5), "device.model must be a string of 1-256 characters", True),
    (
        heart_rate(device__serial=CANARY),
        "device may only have the fields id, manufacturer, model",
        True,
    ),
    (heart_rate(type=DELETE), "type must be a string of 1-64 characters", True),
    (heart_rate(type=7), "type must be a string of 1-64 characters", True),
    (heart_rate(value=True), "value must be a JSON number", True),
    (heart_rate(value=str(NUMBER_CANARY)), "value must be a JSON number", True),
    (heart_rate(value=None), "value must be a JSON number", True),
    (heart_rate(value=[72]), "value must be a JSON number", True),
    (heart_rate(unit=DELETE), "unit must be a string of 1-64 characters", True),
    (heart_rate(unit=1), "unit must be a string of 1-64 characters", True),
    (heart_rate(unit="u" * 65), "unit must be a string of 1-64 characters", True),
    (
        heart_rate(components={"value": {"value": 72, "unit": "/min"}}),
        "reading must have either value and unit, or components",
        True,
    ),
    (
        heart_rate(value=DELETE, unit=DELETE),
        "reading must have either value and unit, or components",
        True,
    ),
    (
        blood_pressure(unit="mm[Hg]"),
        "reading must have either value and unit, or components",
        True,
    ),
    (blood_pressure(components={}), "components must name at least one component", True),
    (blood_pressure(components=[121, 79]), "components must be a JSON object", True),
    (
        blood_pressure(components={" systolic": {"value": 121, "unit": "mm[Hg]"}}),
        "components keys must be names of 1-64 letters, digits, '-' or '_'",
        True,
    ),
    (blood_pressure(components__systolic=121), "components.systolic must be a JSON object", True),
    (
        blood_pressure(components__systolic__unit=DELETE),
        "components.systolic.unit must be a string of 1-64 characters",
        True,
    ),
    (
        blood_pressure(components__diastolic__value=False),
        "components.diastolic.value must be a JSON number",
        True,
    ),
    (
        blood_pressure(components__diastolic__note=CANARY),
        "components.diastolic may only have the fields unit, value",
        True,
    ),
    (heart_rate(time=DELETE), "reading must have either time, or start and end", True),
    (
        heart_rate(start="2026-11-30T08:00:00+08:00"),
        "reading must have either time, or start and end",
        True,
    ),
    (
        heart_rate(end="2026-11-30T08:00:00+08:00"),
        "reading must have either time, or start and end",
        True,
    ),
    (
        heart_rate(time=DELETE, start="2026-11-30T08:00:00+08:00"),
        f"end {MUST_BE_TIMESTAMP}",
        True,
    ),
    *(
        (
            heart_rate(time=bad),
            f"time {MUST_BE_TIMESTAMP}",
            expressible,
        )
        for bad, expressible in [
            ("2026-11-30", True),
            ("2026-11-30T08:00+08:00", True),
            ("2026-11-30 08:00:00+08:00", True),
            ("2026-11-30t08:00:00z", True),
            ("20261130T080000Z", True),
            ("2026-11-30T08:00:00+15:00", True),
            ("2026-11-30T08:00:00+08:00:30", True),
            ("2026-11-30T08:00:00+08:00\n", False),  # python-jsonschema's `$` matches before \n
            (f"2026-11-30T08:00:00+08:00 {CANARY}", True),
            (1796083200, True),
            ("2026-02-30T08:00:00+08:00", False),  # a calendar rule, not a pattern
            ("2026-11-30T24:00:00+08:00", False),
        ]
    ),
    (heart_rate(record_id=4711), "record_id must be a string of 1-256 characters", True),
    (heart_rate(record_id="r" * 257), "record_id must be a string of 1-256 characters", True),
    (heart_rate(zone=""), "zone must be a string of 1-64 characters", True),
    (
        heart_rate(vendor_time="2026-11-30"),
        f"vendor_time {MUST_BE_TIMESTAMP}",
        True,
    ),
]
INVALID_IDS = [f"{i}:{message.split(' ')[0]}" for i, (_, message, _) in enumerate(INVALID)]


@pytest.mark.parametrize(("reading", "message", "expressible"), INVALID, ids=INVALID_IDS)
def test_a_reading_of_the_wrong_shape_is_an_invalid_reading_naming_its_path(
    reading: dict[str, Any], message: str, expressible: bool
) -> None:
    items = parse({"readings": [heart_rate(), reading]})
    assert isinstance(items[0], CandidateReading)
    expected = message.removeprefix("reading ")
    assert items[1] == ParseRejection(
        RejectionCode.INVALID_READING,
        f"readings[1] {expected}" if message.startswith("reading ") else f"readings[1].{message}",
    )


@pytest.mark.parametrize(("reading", "message", "expressible"), INVALID, ids=INVALID_IDS)
def test_a_single_invalid_reading_has_a_path_without_prefix(
    reading: dict[str, Any], message: str, expressible: bool
) -> None:
    assert parse_one(reading) == ParseRejection(RejectionCode.INVALID_READING, message)


@pytest.mark.parametrize(("reading", "message", "expressible"), INVALID, ids=INVALID_IDS)
def test_invalid_reading_messages_never_echo_the_value(
    reading: dict[str, Any], message: str, expressible: bool
) -> None:
    item = parse_one(reading)
    assert isinstance(item, ParseRejection)
    for canary in (CANARY, "87.65", "MRN-1", "SN-1", "vendor-rec-1", "4711", "12345", "MMM"):
        assert canary not in item.message


# --- the JSON Schema describes the same format --------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_schema_type_enum_is_the_measure_table() -> None:
    assert SCHEMA["$defs"]["reading"]["properties"]["type"]["enum"] == list(MEASURES)


def test_the_schema_batch_limit_is_the_default_limit() -> None:
    assert SCHEMA["$defs"]["batch"]["properties"]["readings"]["maxItems"] == 10_000
    assert NativeAdapter().max_readings == 10_000


@pytest.mark.parametrize("example", SCHEMA["examples"])
def test_the_schema_examples_are_valid_and_parse_into_normalisable_readings(
    example: dict[str, Any],
) -> None:
    VALIDATOR.validate(example)
    items = parse(example)
    assert items
    for item in items:
        assert isinstance(item, CandidateReading)
        assert isinstance(normalise(item, now=datetime(2026, 12, 1, tzinfo=UTC)), Reading)


@pytest.mark.parametrize(
    "document",
    [
        heart_rate(),
        blood_pressure(),
        heart_rate(record_id=None, vendor_time=None, zone=None, extra={"any": "thing"}),
        heart_rate(time="2026-11-30T08:00:00"),
        {"readings": [heart_rate(), blood_pressure()], "sent_at": "2026-11-30T00:00:00Z"},
    ],
)
def test_valid_documents_pass_the_schema(document: dict[str, Any]) -> None:
    VALIDATOR.validate(document)


@pytest.mark.parametrize(
    ("reading", "message", "expressible"),
    [c for c in INVALID if c[2]],
    ids=[i for i, c in zip(INVALID_IDS, INVALID, strict=True) if c[2]],
)
def test_readings_the_parser_rejects_for_shape_fail_the_schema(
    reading: dict[str, Any], message: str, expressible: bool
) -> None:
    assert not READING_VALIDATOR.is_valid(reading)
    assert not VALIDATOR.is_valid(reading)
    assert not VALIDATOR.is_valid({"readings": [heart_rate(), reading]})


@pytest.mark.parametrize(
    "document",
    [[heart_rate()], {"readings": []}, {"readings": heart_rate()}, 42, None],
)
def test_top_level_shapes_the_parser_refuses_fail_the_schema(document: object) -> None:
    assert not VALIDATOR.is_valid(document)


def test_the_schema_rejects_a_batch_above_the_limit() -> None:
    assert not VALIDATOR.is_valid({"readings": [heart_rate()] * 10_001})


# --- properties ---------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
interesting = st.sampled_from(
    [
        "",
        "x" * 65,
        "x" * 257,
        "2026-11-30T08:00:00+08:00",
        "2026-11-30T08:00:00Z",
        "2026-11-30T08:00:00",
        "2026-11-30",
        "heart-rate",
        "step-count",
        "/min",
        True,
        0,
        72.5,
        {"value": 1, "unit": "/min"},
        {"systolic": {"value": 120, "unit": "mm[Hg]"}},
    ]
)
FIELD_PATHS = [
    ("subject",),
    ("subject", "system"),
    ("subject", "value"),
    ("device",),
    ("device", "id"),
    ("device", "model"),
    ("device", "manufacturer"),
    ("type",),
    ("value",),
    ("unit",),
    ("components",),
    ("time",),
    ("start",),
    ("end",),
    ("record_id",),
    ("vendor_time",),
    ("zone",),
    ("extra",),
]


@st.composite
def mutated_readings(draw: st.DrawFn) -> dict[str, Any]:
    reading = draw(st.sampled_from([heart_rate(), blood_pressure()]))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(FIELD_PATHS))
        target: Any = reading
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if draw(st.booleans()):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = draw(interesting | json_values)
    return reading


@given(reading=mutated_readings())
def test_the_parser_and_the_schema_agree_on_reading_shape(reading: dict[str, Any]) -> None:
    item = parse_one(reading)
    schema_valid = READING_VALIDATOR.is_valid(reading)
    if schema_valid:
        assert isinstance(item, CandidateReading)
    if isinstance(item, CandidateReading) and item.measure in MEASURES:
        assert schema_valid


@given(body=st.binary(max_size=64))
def test_any_bytes_give_items_or_a_bad_request(body: bytes) -> None:
    for media_type in (JSON, NDJSON):
        try:
            items = parse(body, media_type=media_type)
        except BadRequest:
            continue
        assert all(isinstance(i, CandidateReading | ParseRejection) for i in items)


@given(document=json_values)
def test_any_json_gives_items_or_a_bad_request(document: object) -> None:
    try:
        items = parse(document)
    except InvalidJSON:
        pytest.fail("a body serialised by orjson is valid JSON")
    except BadRequest:
        return
    assert all(isinstance(i, CandidateReading | ParseRejection) for i in items)
