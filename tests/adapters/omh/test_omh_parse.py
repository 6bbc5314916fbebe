"""OmhAdapter.parse: pure, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from gateway.adapters.base import TooManyReadings
from gateway.adapters.omh import OMH_USER_SYSTEM, UNKNOWN_DEVICE, OmhAdapter
from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.models import CandidateReading, ParsedItem, ParseRejection, Quantity
from tests.adapters.omh.samples import (
    FAIL_CODES,
    PASS_REJECTED,
    SAMPLES,
    USER_ID,
    data_point,
    header,
    sample_body,
    sample_keys,
)

JSON = "application/json"
HEART_RATE = "heart-rate/2.0/with-temporal-relationship-to-sleep.json"


def parse(document: Any, *, max_readings: int = 100) -> list[ParsedItem]:
    return OmhAdapter(max_readings=max_readings).parse(orjson.dumps(document), JSON)


def parse_one(document: Any) -> CandidateReading:
    [item] = parse(document)
    assert isinstance(item, CandidateReading), item
    return item


def reject_one(document: Any) -> ParseRejection:
    [item] = parse(document)
    assert isinstance(item, ParseRejection), item
    return item


def heart_rate(body: dict[str, Any] | None = None, **head: Any) -> dict[str, Any]:
    point = data_point(HEART_RATE, "Pass")
    point["header"] |= head
    if body is not None:
        point["body"] = body
    return point


def hr_body(frame: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "heart_rate": {"value": 60, "unit": "beats/min"},
        "effective_time_frame": frame,
        **extra,
    }


# --- every published sample -------------------------------------------------------------------


def test_the_expected_codes_cover_exactly_the_published_should_fail_samples() -> None:
    assert sorted(FAIL_CODES) == sample_keys("Fail")
    assert set(PASS_REJECTED) <= set(sample_keys("Pass"))


@pytest.mark.parametrize("key", sample_keys("Pass"))
def test_each_should_pass_sample_parses_or_is_refused_for_its_listed_reason(key: str) -> None:
    [item] = parse(data_point(key, "Pass"))
    expected = PASS_REJECTED.get(key)
    if isinstance(item, ParseRejection):
        assert item.code.value == expected
    else:
        # invalid-interval is normalise's finding; the parse itself succeeds.
        assert expected in (None, "invalid-interval")


# --- header dialects, subject, device -----------------------------------------------------------


def test_an_omh_header_gives_subject_device_record_id_and_vendor_time() -> None:
    reading = parse_one(heart_rate())
    assert reading.subject.system == OMH_USER_SYSTEM
    assert reading.subject.value == USER_ID
    assert reading.device.id == f"device-{HEART_RATE}"
    assert reading.vendor_record_id == f"omh-sample-{HEART_RATE}"
    assert reading.vendor_time == datetime(2024, 6, 1, tzinfo=UTC)
    assert reading.measure == "heart-rate"
    assert reading.quantities == {"value": Quantity(67.5, "/min")}


def test_an_ieee_1752_header_is_accepted_with_the_datasheet_as_device() -> None:
    point = {
        "header": {
            "uuid": "aaaa1234-1a2b-3c4d-5e6f-000000000001",
            "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
            "source_creation_date_time": "2025-01-01T01:01:01-08:00",
            "modality": "sensed",
            "external_datasheets": [
                {"datasheet_type": "manufacturer", "datasheet_reference": "Oura Ring"}
            ],
            "user_id": "u-7",
        },
        "body": hr_body({"date_time": "2025-01-01T00:01:00-08:00"}),
    }
    reading = parse_one(point)
    assert reading.vendor_record_id == "aaaa1234-1a2b-3c4d-5e6f-000000000001"
    assert reading.device.id == "Oura Ring"
    assert reading.device.manufacturer == "Oura Ring"
    assert reading.subject.value == "u-7"


def test_a_header_without_provenance_gets_the_unknown_device() -> None:
    point = heart_rate()
    del point["header"]["acquisition_provenance"]
    assert parse_one(point).device.id == UNKNOWN_DEVICE


@pytest.mark.parametrize(
    ("name", "overrides", "path"),
    [
        ("missing user", {"user_id": None}, "header.user_id"),
        ("non-string user (header-1.1 shouldFail)", {"user_id": 1}, "header.user_id"),
        ("bad modality (header-1.0 shouldFail)", {"acquisition_provenance": {
            "source_name": "RunKeeper", "modality": "recorded"}}, "header.acquisition_provenance"),
        ("bad date (header-1.0 shouldFail)", {"creation_date_time": "201-02-05T07:25:00Z"},
         "header.creation_date_time"),
        ("both id and uuid", {"uuid": "u"}, "header"),
        ("numeric version", {"schema_id": {"namespace": "omh", "name": "heart-rate",
                                           "version": 2.0}}, "header.schema_id.version"),
    ],
)  # fmt: skip
def test_a_malformed_header_rejects_the_reading_naming_the_path(
    name: str, overrides: dict[str, Any], path: str
) -> None:
    point = heart_rate()
    point["header"] = {k: v for k, v in (point["header"] | overrides).items() if v is not None}
    rejection = reject_one(point)
    assert rejection.code.value == "invalid-reading"
    assert rejection.message.startswith(path)


def test_a_header_without_id_rejects_the_reading() -> None:
    point = heart_rate()
    del point["header"]["id"]  # header-1.0 shouldFail/missing-id.json
    assert reject_one(point).code.value == "invalid-reading"


def test_the_published_data_point_samples_are_refused_as_unsupported_or_malformed() -> None:
    folder = SAMPLES / "data-point" / "1.0"
    valid = json.loads((folder / "shouldPass" / "valid-data-point.json").read_text())
    valid["header"]["user_id"] = USER_ID
    # physical-activity is not a mapped schema.
    assert reject_one(valid).code.value == "unsupported-type"
    for name in ("invalid-header.json", "missing-body.json", "missing-header.json"):
        document = json.loads((folder / "shouldFail" / name).read_text())
        assert reject_one(document).code.value in ("invalid-reading", "unsupported-type")


@pytest.mark.parametrize(
    ("schema_id", "code"),
    [
        ({"namespace": "omh", "name": "physical-activity", "version": "1.0"}, "unsupported-type"),
        ({"namespace": "acme", "name": "heart-rate", "version": "2.0"}, "unsupported-type"),
        ({"namespace": "omh", "name": "heart-rate", "version": "1.0"}, "unsupported-type"),
        ({"namespace": "omh", "name": "heart-rate", "version": "2.1"}, None),
        # Each schema under its own namespace: omh's heart-rate is no IEEE 1752.1 schema.
        ({"namespace": "ieee", "name": "heart-rate", "version": "2.0"}, "unsupported-type"),
    ],
)
def test_the_schema_id_selects_the_mapping(schema_id: dict[str, str], code: str | None) -> None:
    [item] = parse(heart_rate(schema_id=schema_id))
    assert (item.code.value if isinstance(item, ParseRejection) else None) == code


def test_an_unsupported_schema_is_named_only_when_it_looks_like_a_schema_name() -> None:
    named = reject_one(heart_rate(schema_id={"namespace": "ieee", "name": "sleep-episode",
                                             "version": "1.0"}))  # fmt: skip
    assert named.message.startswith("header.schema_id names ieee:sleep-episode, which is not")
    # A value in the wrong place (here an e-mail address) is not echoed.
    odd = reject_one(heart_rate(schema_id={"namespace": "omh", "name": "Jane.Doe@example.org",
                                           "version": "1.0"}))  # fmt: skip
    assert odd.code.value == "unsupported-type"
    assert "Jane" not in odd.message


# --- units ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind", "quantities"),
    [
        ("blood-pressure/4.0/blood-pressure-only.json", "Pass",
         {"systolic": Quantity(115, "mm[Hg]"), "diastolic": Quantity(60, "mm[Hg]")}),
        ("body-temperature/4.0/basal-temperature.json", "Pass",
         {"value": Quantity(96.5, "[degF]")}),
        ("body-mass-index/3.0/valid-body-mass-index.json", "Pass",
         {"value": Quantity(16, "kg/m2")}),
        ("respiratory-rate/2.0/respiratory-rate-only.json", "Pass",
         {"value": Quantity(12, "/min")}),
        ("step-count/3.0/valid-step-count.json", "Pass", {"value": Quantity(10600, "{steps}")}),
        ("oxygen-saturation/2.0/saturation-only.json", "Pass", {"value": Quantity(95, "%")}),
        # Near-misses pass through unchanged, for normalise to refuse as unit-not-convertible.
        ("heart-rate/2.0/incorrect-unit.json", "Fail", {"value": Quantity(60, "beat/min")}),
        ("blood-pressure/4.0/invalid-unit.json", "Fail",
         {"systolic": Quantity(115, "mmH"), "diastolic": Quantity(60, "mm[Hg]")}),
    ],
)  # fmt: skip
def test_omh_units_become_ucum_and_unknown_units_pass_through(
    key: str, kind: str, quantities: dict[str, Quantity]
) -> None:
    assert parse_one(data_point(key, kind)).quantities == quantities


def test_pounds_become_avoirdupois_pounds() -> None:
    point = heart_rate(schema_id={"namespace": "omh", "name": "body-weight", "version": "3.0"})
    frame = {"date_time": "2020-02-05T09:45:00-08:00"}
    point["body"] = {"body_weight": {"value": 115.5, "unit": "lb"}, "effective_time_frame": frame}
    assert parse_one(point).quantities == {"value": Quantity(115.5, "[lb_av]")}


# --- time frames ----------------------------------------------------------------------------------

PACIFIC = timezone(timedelta(hours=-8))


@pytest.mark.parametrize(
    ("interval", "start", "end"),
    [
        ({"start_date_time": "2020-02-05T07:00:00-08:00",
          "end_date_time": "2020-02-05T08:00:00-08:00"},
         datetime(2020, 2, 5, 7, tzinfo=PACIFIC), datetime(2020, 2, 5, 8, tzinfo=PACIFIC)),
        ({"start_date_time": "2020-02-05T07:00:00-08:00", "duration": {"value": 90, "unit": "min"}},
         datetime(2020, 2, 5, 7, tzinfo=PACIFIC), datetime(2020, 2, 5, 8, 30, tzinfo=PACIFIC)),
        ({"end_date_time": "2020-02-05T07:00:00-08:00", "duration": {"value": 1.5, "unit": "h"}},
         datetime(2020, 2, 5, 5, 30, tzinfo=PACIFIC), datetime(2020, 2, 5, 7, tzinfo=PACIFIC)),
        ({"start_date_time": "2020-02-05T07:00:00-08:00", "duration": {"value": 1, "unit": "wk"}},
         datetime(2020, 2, 5, 7, tzinfo=PACIFIC), datetime(2020, 2, 12, 7, tzinfo=PACIFIC)),
        ({"start_date_time": "2020-02-05T07:00:00-08:00", "duration": {"value": 30, "unit": "sec"}},
         datetime(2020, 2, 5, 7, tzinfo=PACIFIC), datetime(2020, 2, 5, 7, 0, 30, tzinfo=PACIFIC)),
    ],
)  # fmt: skip
def test_every_time_interval_form_gives_start_and_end(
    interval: dict[str, Any], start: datetime, end: datetime
) -> None:
    reading = parse_one(heart_rate(hr_body({"time_interval": interval})))
    assert (reading.start, reading.end, reading.offset_assumed) == (start, end, False)


@pytest.mark.parametrize(
    ("part", "start_hour", "end_hour"),
    [("night", 0, 6), ("morning", 6, 12), ("afternoon", 12, 18), ("evening", 18, 24)],
)
def test_a_part_of_day_is_that_span_of_the_date_in_utc_by_assumption(
    part: str, start_hour: int, end_hour: int
) -> None:
    frame = {"time_interval": {"date": "2013-02-05", "part_of_day": part}}
    reading = parse_one(heart_rate(hr_body(frame)))
    assert reading.offset_assumed
    assert reading.start.tzinfo is None
    assert reading.end is not None
    assert reading.end.tzinfo is None
    midnight = datetime(2013, 2, 5, tzinfo=UTC)
    assert reading.start.replace(tzinfo=UTC) == midnight + timedelta(hours=start_hour)
    assert reading.end.replace(tzinfo=UTC) == midnight + timedelta(hours=end_hour)


def test_a_time_without_offset_is_utc_by_assumption() -> None:
    reading = parse_one(heart_rate(hr_body({"date_time": "2020-02-05T07:25:00.123"})))
    assert reading.start.tzinfo is None
    assert reading.offset_assumed


def test_a_time_with_offset_keeps_it() -> None:
    reading = parse_one(heart_rate(hr_body({"date_time": "2020-02-05T07:25:00+01:00"})))
    assert reading.start.utcoffset() == timedelta(hours=1)
    assert not reading.offset_assumed


@pytest.mark.parametrize(
    "frame",
    [
        {"time_interval": {"start_date_time": "2020-02-05T07:00:00Z",
                           "duration": {"value": 1, "unit": "Mo"}}},
        {"time_interval": {"start_date_time": "2020-02-05T07:00:00Z",
                           "duration": {"value": -1, "unit": "h"}}},
        {"time_interval": {"start_date_time": "2020-02-05T07:00:00Z",
                           "end_date_time": "2020-02-05T08:00:00Z",
                           "duration": {"value": 1, "unit": "h"}}},
        {"time_interval": {"date": "2013-02-30", "part_of_day": "morning"}},
        {"time_interval": {"date": "2013-02-05", "part_of_day": "noon"}},
        {"date_time": "2020-02-05 07:25:00Z"},
        {"date_time": "2020-02-05T07:25:00Z", "time_interval": {}},
    ],
)  # fmt: skip
def test_a_malformed_time_frame_rejects_the_reading(frame: dict[str, Any]) -> None:
    rejection = reject_one(heart_rate(hr_body(frame)))
    assert rejection.code.value == "invalid-reading"
    assert rejection.message.startswith("body.effective_time_frame")


# --- statistics -----------------------------------------------------------------------------------


def test_a_descriptive_statistic_is_carried_on_an_interval() -> None:
    reading = parse_one(data_point("heart-rate/2.0/with-descriptive-statistic.json", "Pass"))
    assert reading.statistic == "minimum"
    assert reading.end is not None


def test_a_statistic_at_a_point_in_time_is_rejected() -> None:
    body = hr_body({"date_time": "2020-02-05T07:25:00Z"}, descriptive_statistic="average")
    assert reject_one(heart_rate(body)).code.value == "invalid-reading"


@pytest.mark.parametrize("statistic", ["count", "variance", "standard deviation", "sum"])
def test_a_statistic_that_is_not_a_heart_rate_is_unsupported(statistic: str) -> None:
    frame = {"time_interval": {"start_date_time": "2020-02-05T07:00:00Z",
                               "end_date_time": "2020-02-05T08:00:00Z"}}  # fmt: skip
    body = hr_body(frame, descriptive_statistic=statistic)
    assert reject_one(heart_rate(body)).code.value == "unsupported-type"


def test_a_sum_of_steps_is_a_step_count() -> None:
    point = data_point("step-count/3.0/valid-step-count.json", "Pass")
    point["body"]["descriptive_statistic"] = "sum"
    assert parse_one(point).statistic == "sum"


# --- body shape -----------------------------------------------------------------------------------


def test_messages_never_echo_payload_values() -> None:
    canary = "CANARY-unit-9x"
    body = sample_body("step-count/3.0/with-date-time.json", "Fail")
    body["step_count"]["unit"] = canary
    point = {"header": header("step-count/3.0/x.json", user_id="CANARY-user"), "body": body}
    rejection = reject_one(point)
    assert canary not in rejection.message
    assert "CANARY-user" not in rejection.message


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", InvalidJSON),
        (b"[]", BadRequest),
        (b"42", BadRequest),
        (b'{"heart_rate": {"value": 60, "unit": "beats/min"}}', BadRequest),  # a bare body
    ],
)
def test_a_body_that_is_not_data_points_is_refused_whole(
    body: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        OmhAdapter().parse(body, JSON)


def test_an_array_of_data_points_gives_one_item_each_in_order() -> None:
    keys = ["heart-rate/2.0/incorrect-unit.json", "heart-rate/2.0/empty-document.json"]
    items = parse([data_point(keys[0], "Fail"), data_point(keys[1], "Fail"), 7])
    assert [type(item) for item in items] == [CandidateReading, ParseRejection, ParseRejection]
    assert isinstance(items[2], ParseRejection)
    assert items[2].message.startswith("[2]")


def test_more_data_points_than_the_limit_are_refused() -> None:
    with pytest.raises(TooManyReadings):
        parse([heart_rate()] * 3, max_readings=2)


def test_only_json_is_accepted() -> None:
    with pytest.raises(UnsupportedMediaType):
        OmhAdapter().parse(b"{}", "application/x-ndjson")
