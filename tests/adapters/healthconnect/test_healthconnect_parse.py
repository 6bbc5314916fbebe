"""Health Connect records -> candidate readings: pure parse-level tests, one behaviour each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from gateway.adapters.base import TooManyReadings
from gateway.adapters.healthconnect import HealthConnectAdapter
from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.measures.normalise import normalise
from gateway.models import (
    CandidateReading,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    Reading,
    RejectionCode,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "healthconnect"
SCHEMA = orjson.loads(
    (Path(__file__).parents[3] / "schemas" / "healthconnect.schema.json").read_bytes()
)
SUBJECT = {"system": "urn:oid:1.2.156.999.1", "value": "MRN-HC-1"}
CN = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 30, tzinfo=UTC)
SECRET = "SECRET-7731"  # planted in payloads: must never appear in a message


def parse(*records: dict[str, Any], max_readings: int = 10_000) -> list[ParsedItem]:
    body = orjson.dumps({"subject": SUBJECT, "records": list(records)})
    return HealthConnectAdapter(max_readings=max_readings).parse(body, "application/json")


def only(*records: dict[str, Any]) -> CandidateReading:
    [item] = parse(*records)
    assert isinstance(item, CandidateReading), item
    return item


def rejected(*records: dict[str, Any]) -> ParseRejection:
    [item] = parse(*records)
    assert isinstance(item, ParseRejection), item
    return item


def normalised(candidate: CandidateReading) -> Reading:
    reading = normalise(candidate, now=NOW)
    assert isinstance(reading, Reading), reading
    return reading


def point(kind: str, **fields: Any) -> dict[str, Any]:
    return {"recordType": kind, "time": "2025-08-09T00:20:00Z", "zoneOffset": "+08:00", **fields}


# --- record types --------------------------------------------------------------------------


def test_a_heart_rate_record_gives_one_reading_per_sample_at_the_records_offset() -> None:
    items = parse(
        {
            "recordType": "HeartRateRecord",
            "startTime": "2025-08-09T00:00:00Z",
            "startZoneOffset": "+08:00",
            "endTime": "2025-08-09T00:10:00Z",
            "endZoneOffset": "+08:00",
            "samples": [
                {"time": "2025-08-09T00:01:00Z", "beatsPerMinute": 64},
                {"time": "2025-08-09T00:02:00Z", "beatsPerMinute": 66},
            ],
        }
    )
    assert [(i.measure, i.quantities, i.start, i.end) for i in items] == [  # type: ignore[union-attr]
        (
            "heart-rate",
            {"value": Quantity(64, "/min")},
            datetime(2025, 8, 9, 8, 1, tzinfo=CN),
            None,
        ),
        (
            "heart-rate",
            {"value": Quantity(66, "/min")},
            datetime(2025, 8, 9, 8, 2, tzinfo=CN),
            None,
        ),
    ]
    assert all(i.start.utcoffset() == timedelta(hours=8) for i in items)  # type: ignore[union-attr]


def test_the_plugins_heart_rate_series_name_is_read_as_heart_rate() -> None:
    items = parse(
        {
            "type": "HeartRateSeries",
            "startTime": "2025-08-09T08:00:00+00:00",
            "endTime": "2025-08-09T09:00:00+00:00",
            "samples": [{"time": "2025-08-09T08:30:00+00:00", "beatsPerMinute": 98}],
        }
    )
    assert [i.measure for i in items] == ["heart-rate"]  # type: ignore[union-attr]


def test_a_steps_record_is_an_interval_with_both_offsets_kept() -> None:
    reading = only(
        {
            "recordType": "StepsRecord",
            "startTime": "2025-08-09T00:00:00Z",
            "startZoneOffset": "+08:00",
            "endTime": "2025-08-09T01:00:00Z",
            "endZoneOffset": "+09:00",
            "count": 3120,
        }
    )
    assert reading.measure == "step-count"
    assert reading.quantities == {"value": Quantity(3120, "{steps}")}
    assert reading.start.isoformat() == "2025-08-09T08:00:00+08:00"
    assert reading.end is not None
    assert reading.end.isoformat() == "2025-08-09T10:00:00+09:00"


@pytest.mark.parametrize(
    ("systolic", "diastolic"),
    [
        ({"inMillimetersOfMercury": 131.0}, {"inMillimetersOfMercury": 84.0}),
        (
            {"unit": "millimetersOfMercury", "value": 131},
            {"unit": "millimetersOfMercury", "value": 84},
        ),
    ],
    ids=["plain", "plugin"],
)
def test_blood_pressure_becomes_a_panel_in_mm_hg(
    systolic: dict[str, Any], diastolic: dict[str, Any]
) -> None:
    reading = only(point("BloodPressure", systolic=systolic, diastolic=diastolic))
    assert reading.measure == "blood-pressure"
    assert reading.quantities == {
        "systolic": Quantity(131, "mm[Hg]"),
        "diastolic": Quantity(84, "mm[Hg]"),
    }


@pytest.mark.parametrize("percentage", [96.5, {"value": 96.5}], ids=["number", "object"])
def test_oxygen_saturation_is_a_percentage_from_0_to_100(percentage: object) -> None:
    reading = only(point("OxygenSaturationRecord", percentage=percentage))
    assert (reading.measure, reading.quantities) == (
        "oxygen-saturation",
        {"value": Quantity(96.5, "%")},
    )


def test_a_fraction_of_one_is_not_rescaled_and_normalise_rejects_it() -> None:
    reading = only(point("OxygenSaturation", percentage={"value": 0.97}))
    assert normalise(reading, now=NOW).code == RejectionCode.OUT_OF_RANGE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("temperature", "celsius"),
    [
        ({"inCelsius": 36.9}, 36.9),
        ({"unit": "celsius", "value": 36.9}, 36.9),
        ({"inFahrenheit": 98.6}, 37.0),
        ({"unit": "fahrenheit", "value": 98.6}, 37.0),
    ],
)
def test_body_temperature_ends_up_in_celsius(temperature: dict[str, Any], celsius: float) -> None:
    reading = normalised(only(point("BodyTemperature", temperature=temperature)))
    assert reading.measure.name == "body-temperature"
    assert reading.values[0].spec.ucum == "Cel"
    assert reading.values[0].value == pytest.approx(celsius)


@pytest.mark.parametrize(
    ("weight", "kilograms"),
    [
        ({"inKilograms": 70.2}, 70.2),
        ({"unit": "kilogram", "value": 70.2}, 70.2),
        ({"unit": "gram", "value": 70200}, 70.2),  # what the plugin writes on read
        ({"inPounds": 165.0}, 74.84274105),
        ({"inOunces": 2640.0}, 74.84274105),
    ],
)
def test_weight_ends_up_in_kilograms(weight: dict[str, Any], kilograms: float) -> None:
    reading = normalised(only(point("WeightRecord", weight=weight)))
    assert reading.measure.name == "body-weight"
    assert reading.values[0].value == pytest.approx(kilograms, abs=1e-5)


def test_the_first_sdk_getter_wins_when_a_unit_object_carries_all_of_them() -> None:
    reading = only(point("Weight", weight={"inKilograms": 70.0, "inGrams": 70000.0, "inPounds": 1}))
    assert reading.quantities == {"value": Quantity(70.0, "kg")}


@pytest.mark.parametrize(
    ("height", "centimetres"),
    [
        ({"inMeters": 1.72}, 172.0),
        ({"unit": "meter", "value": 1.78}, 178.0),
        ({"inFeet": 6}, 182.88),
    ],
)
def test_height_ends_up_in_centimetres(height: dict[str, Any], centimetres: float) -> None:
    reading = normalised(only(point("Height", height=height)))
    assert reading.measure.name == "body-height"
    assert reading.values[0].value == pytest.approx(centimetres)


def test_respiratory_rate_is_per_minute() -> None:
    reading = only(point("RespiratoryRateRecord", rate=15.0))
    assert (reading.measure, reading.quantities) == (
        "respiratory-rate",
        {"value": Quantity(15, "/min")},
    )


def test_resting_heart_rate_is_its_own_measure() -> None:
    reading = only(point("RestingHeartRate", beatsPerMinute=58))
    assert (reading.measure, reading.quantities) == (
        "resting-heart-rate",
        {"value": Quantity(58, "/min")},
    )


def test_body_fat_is_a_percentage() -> None:
    reading = only(point("BodyFat", percentage={"value": 21.4}))
    assert (reading.measure, reading.quantities) == (
        "body-fat-percentage",
        {"value": Quantity(21.4, "%")},
    )


@pytest.mark.parametrize(
    ("level", "mg_per_dl"),
    [
        ({"inMilligramsPerDeciliter": 92}, 92.0),
        ({"unit": "milligramsPerDeciliter", "value": 92}, 92.0),
        ({"inMillimolesPerLiter": 5.5}, 99.085745),
        ({"unit": "millimolesPerLiter", "value": 5.5}, 99.085745),
    ],
)
def test_blood_glucose_in_mmol_per_litre_is_converted_to_mg_per_dl(
    level: dict[str, Any], mg_per_dl: float
) -> None:
    reading = normalised(only(point("BloodGlucose", level=level, specimenSource="capillary_blood")))
    assert reading.measure.name == "blood-glucose"
    assert reading.values[0].spec.ucum == "mg/dL"
    assert reading.values[0].value == pytest.approx(mg_per_dl)


@pytest.mark.parametrize(
    ("source", "measure"),
    [
        (2, "blood-glucose"),
        ("capillary_blood", "blood-glucose"),
        (1, "interstitial-glucose"),
        ("interstitial_fluid", "interstitial-glucose"),
        # SPECIMEN_SOURCE_UNKNOWN, or none given: stored, but never as capillary blood.
        (None, "glucose"),
        (0, "glucose"),
        ("unknown", "glucose"),
    ],
)
def test_glucose_is_stored_under_the_measure_of_its_specimen(source: object, measure: str) -> None:
    extra = {} if source is None else {"specimenSource": source}
    reading = only(point("BloodGlucose", level={"inMilligramsPerDeciliter": 92}, **extra))
    assert reading.measure == measure


@pytest.mark.parametrize("source", [3, "plasma", 4, "serum", 5, "tears", 6, "whole_blood"])
def test_glucose_from_specimens_without_a_measure_is_refused(source: object) -> None:
    rejection = rejected(
        point("BloodGlucose", level={"inMilligramsPerDeciliter": 92}, specimenSource=source)
    )
    assert rejection.code == RejectionCode.UNSUPPORTED_TYPE
    assert "specimenSource is not supported" in rejection.message


@pytest.mark.parametrize("source", [7, -1, "fluid", True, [1], {"a": 1}])
def test_a_specimen_source_outside_the_sdk_constants_is_invalid(source: object) -> None:
    rejection = rejected(
        point("BloodGlucose", level={"inMilligramsPerDeciliter": 92}, specimenSource=source)
    )
    assert rejection.code == RejectionCode.INVALID_READING


def test_rmssd_heart_rate_variability_is_refused_and_never_stored_as_sdnn() -> None:
    rejection = rejected(point("HeartRateVariabilityRmssdRecord", heartRateVariabilityMillis=42.5))
    assert rejection.code == RejectionCode.UNSUPPORTED_TYPE
    assert "RMSSD" in rejection.message
    assert "not SDNN" in rejection.message


def test_skin_temperature_deltas_are_refused() -> None:
    rejection = rejected(point("SkinTemperature", temperatureDeltaCelsius=0.3))
    assert rejection.code == RejectionCode.UNSUPPORTED_TYPE
    assert "delta" in rejection.message


def test_a_known_unsupported_record_type_is_named_in_its_rejection() -> None:
    rejection = rejected(point("Vo2Max", vo2MillilitersPerMinuteKilogram=48.2))
    assert rejection.code == RejectionCode.UNSUPPORTED_TYPE
    assert "Vo2Max" in rejection.message


def test_an_unknown_record_type_is_not_echoed() -> None:
    rejection = rejected(point(SECRET))
    assert rejection.code == RejectionCode.UNSUPPORTED_TYPE
    assert SECRET not in rejection.message


# --- times ---------------------------------------------------------------------------------


def test_a_missing_zone_offset_means_utc_and_is_flagged_as_assumed() -> None:
    reading = only(
        {"type": "Weight", "time": "2025-08-09T00:20:00Z", "weight": {"inKilograms": 70}}
    )
    assert reading.start == datetime(2025, 8, 9, 0, 20, tzinfo=UTC)
    assert reading.start.utcoffset() == timedelta(0)
    assert reading.offset_assumed is True


def test_a_given_zone_offset_is_not_flagged_as_assumed() -> None:
    assert only(point("Weight", weight={"inKilograms": 70})).offset_assumed is False


@pytest.mark.parametrize(
    ("offset", "local"),
    [
        ("+08:00", "2025-08-09T08:20:00+08:00"),
        (28800, "2025-08-09T08:20:00+08:00"),
        ("+05:45", "2025-08-09T06:05:00+05:45"),
        ("-03:30", "2025-08-08T20:50:00-03:30"),
        ("Z", "2025-08-09T00:20:00+00:00"),
        ("+08", "2025-08-09T08:20:00+08:00"),
    ],
)
def test_the_instant_is_expressed_at_the_records_zone_offset(offset: object, local: str) -> None:
    reading = only(point("Weight", weight={"inKilograms": 70}, zoneOffset=offset))
    assert reading.start.isoformat() == local
    assert reading.start == datetime(2025, 8, 9, 0, 20, tzinfo=UTC)


def test_an_instant_with_nanoseconds_keeps_microseconds() -> None:
    reading = only(
        point("Weight", weight={"inKilograms": 70}, time="2025-08-09T00:20:00.123456789Z")
    )
    assert reading.start.microsecond == 123456


@pytest.mark.parametrize("offset", ["+19:00", "08:00", 90_000, "+08:61", True])
def test_an_impossible_zone_offset_is_an_invalid_reading(offset: object) -> None:
    rejection = rejected(point("Weight", weight={"inKilograms": 70}, zoneOffset=offset))
    assert rejection.code == RejectionCode.INVALID_READING
    assert "records[0].zoneOffset" in rejection.message


@pytest.mark.parametrize("time", ["2025-08-09T00:20:00", "2025-08-09", 1754698800000, None])
def test_a_time_that_is_not_an_instant_is_an_invalid_reading(time: object) -> None:
    rejection = rejected(point("Weight", weight={"inKilograms": 70}, time=time))
    assert rejection.code == RejectionCode.INVALID_READING
    assert "records[0].time" in rejection.message


def test_a_sample_outside_its_record_is_rejected_alone() -> None:
    items = parse(
        {
            "type": "HeartRate",
            "startTime": "2025-08-09T08:00:00Z",
            "endTime": "2025-08-09T09:00:00Z",
            "samples": [
                {"time": "2025-08-09T08:30:00Z", "beatsPerMinute": 98},
                {"time": "2025-08-09T09:30:00Z", "beatsPerMinute": 99},
                {"time": "2025-08-09T08:45:00Z", "beatsPerMinute": "fast"},
            ],
        }
    )
    assert isinstance(items[0], CandidateReading)
    assert isinstance(items[1], ParseRejection)
    assert "samples[1].time" in items[1].message
    assert isinstance(items[2], ParseRejection)
    assert "samples[2].beatsPerMinute must be a JSON number" in items[2].message


# --- metadata ------------------------------------------------------------------------------


def test_metadata_gives_the_device_record_id_and_vendor_time() -> None:
    reading = only(
        point(
            "Weight",
            weight={"inKilograms": 70},
            metadata={
                "id": "hc-uuid-1",
                "clientRecordId": "client-1",
                "clientRecordVersion": 4,
                "lastModifiedTime": "2025-08-09T00:21:00Z",
                "dataOrigin": {"packageName": "com.example.scale"},
                "device": {"manufacturer": "Acme", "model": "Scale 3", "type": 4},
            },
        )
    )
    assert reading.device.id == "Scale 3/Acme/com.example.scale"
    assert (reading.device.model, reading.device.manufacturer) == ("Scale 3", "Acme")
    assert reading.vendor_record_id == "client-1"
    assert reading.vendor_time == datetime(2025, 8, 9, 0, 21, tzinfo=UTC)


def test_the_plugins_metadata_names_the_app_as_a_string_and_falls_back_to_the_record_id() -> None:
    reading = only(
        point("Weight", weight={"inKilograms": 70}, metadata={"id": "hc-1", "dataOrigin": "com.x"})
    )
    assert (reading.device.id, reading.vendor_record_id) == ("com.x", "hc-1")


def test_a_record_without_metadata_has_the_unknown_device() -> None:
    reading = only(point("Weight", weight={"inKilograms": 70}))
    assert (reading.device.id, reading.vendor_record_id) == ("healthconnect-unknown", None)


@pytest.mark.parametrize("version", [-1, "3", 1.5, True])
def test_a_malformed_client_record_version_is_an_invalid_reading(version: object) -> None:
    rejection = rejected(
        point("Weight", weight={"inKilograms": 70}, metadata={"clientRecordVersion": version})
    )
    assert rejection.code == RejectionCode.INVALID_READING
    assert "metadata.clientRecordVersion" in rejection.message


def test_every_reading_carries_the_bodys_subject() -> None:
    assert only(point("Weight", weight={"inKilograms": 70})).subject == Identifier(**SUBJECT)


# --- per-record rejections -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "path"),
    [
        (point("Weight"), "records[0].weight must be a JSON object"),
        (point("Weight", weight={"value": 70}), "records[0].weight must have one of inKilograms"),
        (point("Weight", weight={"inKilograms": SECRET}), "records[0].weight.inKilograms"),
        (point("Weight", weight={"unit": "kilogram", "value": SECRET}), "records[0].weight.value"),
        (point("RespiratoryRate", rate=SECRET), "records[0].rate must be a JSON number"),
        (point("Steps", count=10), "records[0].startTime"),
        (point("BloodPressure", systolic={"inMillimetersOfMercury": 120}), "records[0].diastolic"),
        ({"type": "Weight", "recordType": "Height"}, "records[0] must have one record type"),
        ({"time": "2025-08-09T00:20:00Z"}, "records[0] must have one record type"),
        (point("HeartRate", samples=[]), "records[0].startTime"),
        (SECRET, "records[0] must be a JSON object"),
    ],
)
def test_a_malformed_record_is_an_invalid_reading_naming_the_path_not_the_value(
    record: object, path: str
) -> None:
    body = orjson.dumps({"subject": SUBJECT, "records": [record]})
    [rejection] = HealthConnectAdapter().parse(body, "application/json")
    assert isinstance(rejection, ParseRejection)
    assert rejection.code == RejectionCode.INVALID_READING
    assert path in rejection.message
    assert SECRET not in rejection.message


def test_an_unknown_unit_word_is_not_convertible_and_not_echoed() -> None:
    rejection = rejected(point("Weight", weight={"unit": SECRET, "value": 70}))
    assert rejection.code == RejectionCode.UNIT_NOT_CONVERTIBLE
    assert SECRET not in rejection.message
    assert "kilogram" in rejection.message


def test_one_bad_record_does_not_affect_its_neighbours() -> None:
    items = parse(
        point("Weight", weight={"inKilograms": 70}),
        point("Weight"),
        point("Height", height={"inMeters": 1.7}),
    )
    assert [type(item) for item in items] == [CandidateReading, ParseRejection, CandidateReading]


# --- the body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"subject": {"system": "s", "value": "v"}, "records": [', InvalidJSON),
        (b"[]", BadRequest),
        (b'{"records": [{"type": "Weight"}]}', BadRequest),
        (b'{"subject": "MRN-1", "records": [{"type": "Weight"}]}', BadRequest),
        (b'{"subject": {"system": "s"}, "records": [{"type": "Weight"}]}', BadRequest),
        (b'{"subject": {"system": "s", "value": 7}, "records": [{"type": "Weight"}]}', BadRequest),
        (b'{"subject": {"system": "s", "value": "v"}, "records": []}', BadRequest),
        (b'{"subject": {"system": "s", "value": "v"}, "records": {}}', BadRequest),
        (b'{"subject": {"system": "s", "value": "v"}, "records": [{}], "x": 1}', BadRequest),
    ],
)
def test_a_body_that_is_not_the_documented_shape_is_refused(
    body: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        HealthConnectAdapter().parse(body, "application/json")


def test_the_reading_limit_counts_heart_rate_samples() -> None:
    record = {
        "type": "HeartRate",
        "startTime": "2025-08-09T08:00:00Z",
        "endTime": "2025-08-09T09:00:00Z",
        "samples": [{"time": "2025-08-09T08:30:00Z", "beatsPerMinute": 90}] * 3,
    }
    assert len(parse(record, max_readings=3)) == 3
    with pytest.raises(TooManyReadings):
        parse(record, max_readings=2)


def test_ndjson_is_not_a_healthconnect_media_type() -> None:
    with pytest.raises(UnsupportedMediaType):
        HealthConnectAdapter().parse(b"{}", "application/x-ndjson")


# --- fixtures against the schema -----------------------------------------------------------


@pytest.mark.parametrize("name", ["healthconnect_beispiel_records.json", "plain_records.json"])
def test_the_fixtures_are_valid_against_the_published_schema(name: str) -> None:
    records = orjson.loads((FIXTURES / name).read_bytes())["records"]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.validate({"subject": SUBJECT, "records": records})


def test_the_schema_examples_parse_without_rejections() -> None:
    for example in SCHEMA["examples"]:
        items = HealthConnectAdapter().parse(orjson.dumps(example), "application/json")
        assert all(isinstance(item, CandidateReading) for item in items)


def test_the_published_sample_parses_its_supported_records_and_refuses_the_rest() -> None:
    records = orjson.loads((FIXTURES / "healthconnect_beispiel_records.json").read_bytes())[
        "records"
    ]
    items = parse(*records)
    readings = [item for item in items if isinstance(item, CandidateReading)]
    refusals = [item for item in items if isinstance(item, ParseRejection)]
    assert len(items) == len(records) + 1  # the one HeartRate record has two samples
    assert len(readings) == 12
    assert {r.code for r in refusals} == {RejectionCode.UNSUPPORTED_TYPE}
    assert all(normalise(r, now=NOW).__class__ is Reading for r in readings)
