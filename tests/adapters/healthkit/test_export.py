"""export.xml, parsed as a stream: mappings, correlations, unit traps and refused XML."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from gateway.adapters.base import TooManyReadings
from gateway.adapters.healthkit import ExportSummary, parse_export
from gateway.errors import BadRequest
from gateway.models import CandidateReading, Identifier, ParsedItem, ParseRejection, RejectionCode

FIXTURES = Path(__file__).parents[2] / "fixtures" / "healthkit"
SUBJECT = Identifier("https://example.org/study-participant", "P-0001")


def parse(body: bytes, **kwargs: object) -> list[ParsedItem]:
    return list(parse_export(body, SUBJECT, "fallback", **kwargs))  # type: ignore[arg-type]


def candidates(body: bytes) -> list[CandidateReading]:
    items = parse(body)
    assert all(isinstance(i, CandidateReading) for i in items), items
    return [i for i in items if isinstance(i, CandidateReading)]


def export(*records: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<HealthData locale="en_US">\n'
        '<ExportDate value="2020-09-13 08:11:54 +0900"/>\n' + "\n".join(records) + "\n</HealthData>"
    ).encode()


def record(
    kind: str, unit: str, value: str, start: str = "2020-09-01 08:01:10 +0200", **extra: str
) -> str:
    end = extra.pop("end", start)
    attrs = " ".join(f'{k}="{v}"' for k, v in extra.items())
    return (
        f'<Record type="HKQuantityTypeIdentifier{kind}" sourceName="Apple Watch" '
        f"unit={quoteattr(unit)} "
        f'startDate="{start}" endDate="{end}" value="{value}" {attrs}/>'
    )


def test_apples_export_with_its_dtd_internal_subset_is_read() -> None:
    items = candidates((FIXTURES / "ahcd-export.xml").read_bytes())
    assert [i.measure for i in items] == [
        "body-mass-index", "body-mass-index", "heart-rate", "blood-pressure",
    ]  # fmt: skip


def test_a_blood_pressure_correlation_is_one_reading_timed_by_the_correlation() -> None:
    *_, bp = candidates((FIXTURES / "ahcd-export.xml").read_bytes())
    assert {k: (q.value, q.unit) for k, q in bp.quantities.items()} == {
        "systolic": (125.0, "mm[Hg]"),
        "diastolic": (74.0, "mm[Hg]"),
    }
    assert bp.start == datetime(2020, 8, 2, 19, 12, 21, tzinfo=timezone(timedelta(hours=9)))


def test_correlation_members_repeated_at_top_level_are_counted_once() -> None:
    summary = ExportSummary()
    body = (FIXTURES / "rinoshiyo-sample_export.xml").read_bytes()
    items = list(parse_export(body, SUBJECT, "fallback", summary=summary))
    assert [i.measure for i in items if isinstance(i, CandidateReading)] == [
        "heart-rate", "heart-rate", "step-count", "blood-pressure",
    ]  # fmt: skip
    assert summary.skipped_types == {
        "HKCategoryTypeIdentifierStateOfMind": 1,
        "HKQuantityTypeIdentifierBloodPressureSystolic": 1,
        "HKQuantityTypeIdentifierBloodPressureDiastolic": 1,
    }


def test_the_offset_is_kept_as_written() -> None:
    [hr] = candidates(export(record("HeartRate", "count/min", "72")))
    assert hr.start.utcoffset() == timedelta(hours=2)
    assert hr.end is None
    assert (hr.quantities["value"].value, hr.quantities["value"].unit) == (72.0, "/min")


def test_the_device_string_gives_manufacturer_hardware_and_a_device_id() -> None:
    [hr] = candidates((FIXTURES / "dogsheep-export.xml").read_bytes())[1:]
    assert hr.device.manufacturer == "Apple"
    assert hr.device.model == "Watch2,4"
    assert hr.device.id.endswith("/Watch2,4")


@pytest.mark.parametrize(
    ("kind", "unit", "value", "measure", "expected"),
    [
        ("OxygenSaturation", "%", "0.97", "oxygen-saturation", (97.0, "%")),
        ("BodyFatPercentage", "%", "0.215", "body-fat-percentage", (21.5, "%")),
        ("BodyTemperature", "degF", "98.6", "body-temperature", (98.6, "[degF]")),
        ("BodyTemperature", "degC", "36.8", "body-temperature", (36.8, "Cel")),
        ("BodyMass", "lb", "165", "body-weight", (165.0, "[lb_av]")),
        ("BodyMass", "kg", "74.8", "body-weight", (74.8, "kg")),
        ("Height", "ft", "5.5", "body-height", (66.0, "[in_i]")),
        ("Height", "cm", "172", "body-height", (172.0, "cm")),
        ("BodyMassIndex", "count", "22.5", "body-mass-index", (22.5, "kg/m2")),
        ("BloodGlucose", "mmol<180.1558800000541>/L", "5.5", "glucose", (5.5, "mmol/L")),
        ("BloodGlucose", "mg/dL", "99", "glucose", (99.0, "mg/dL")),
        ("RestingHeartRate", "count/min", "58", "resting-heart-rate", (58.0, "/min")),
        ("RespiratoryRate", "count/min", "14", "respiratory-rate", (14.0, "/min")),
        ("HeartRateVariabilitySDNN", "ms", "42", "heart-rate-variability-sdnn", (42.0, "ms")),
    ],
)
def test_each_supported_type_maps_to_its_measure_and_an_accepted_unit(
    kind: str, unit: str, value: str, measure: str, expected: tuple[float, str]
) -> None:
    [item] = candidates(export(record(kind, unit, value)))
    assert item.measure == measure
    assert (item.quantities["value"].value, item.quantities["value"].unit) == expected


def test_step_count_keeps_its_interval() -> None:
    [item] = candidates(
        export(record("StepCount", "count", "100", end="2020-09-01 08:31:10 +0200"))
    )
    assert item.measure == "step-count"
    assert item.end is not None
    assert item.end - item.start == timedelta(minutes=30)


def test_unsupported_types_are_skipped_and_counted() -> None:
    summary = ExportSummary()
    body = export(
        record("ActiveEnergyBurned", "kcal", "3"), record("DistanceWalkingRunning", "km", "1")
    )
    assert list(parse_export(body, SUBJECT, "fallback", summary=summary)) == []
    assert summary.skipped == 2


def test_an_unknown_unit_of_a_known_type_is_unit_not_convertible_without_echoing_it() -> None:
    [item] = parse(export(record("BloodGlucose", "mmol<999.1>/L", "5.5")))
    assert isinstance(item, ParseRejection)
    assert item.code is RejectionCode.UNIT_NOT_CONVERTIBLE
    assert "999" not in item.message


@pytest.mark.parametrize(
    "bad",
    [
        record("HeartRate", "count/min", "seventy"),
        record("HeartRate", "count/min", "72", start="2020-09-01T08:01:10+02:00"),
        record("HeartRate", "count/min", "72", start="2020-09-01 08:01:10"),
        '<Record type="HKQuantityTypeIdentifierHeartRate" sourceName="x" unit="count/min" '
        'value="72"/>',
    ],
)
def test_a_malformed_record_is_an_invalid_reading_and_the_next_one_is_read(bad: str) -> None:
    items = parse(export(bad, record("HeartRate", "count/min", "61")))
    assert isinstance(items[0], ParseRejection)
    assert items[0].code is RejectionCode.INVALID_READING
    assert isinstance(items[1], CandidateReading)


def test_a_correlation_without_diastolic_is_left_to_normalise() -> None:
    body = export(
        '<Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="x" '
        'startDate="2020-09-01 08:01:10 +0200" endDate="2020-09-01 08:01:10 +0200">'
        + record("BloodPressureSystolic", "mmHg", "120")
        + "</Correlation>"
    )
    [item] = candidates(body)
    assert set(item.quantities) == {"systolic"}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE HealthData [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<HealthData locale="en_US">&lol3;</HealthData>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE HealthData [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<HealthData locale="en_US"><Record type="HKQuantityTypeIdentifierHeartRate" value="&xxe;"/>
</HealthData>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE HealthData SYSTEM "http://example.org/evil.dtd">
<HealthData locale="en_US"/>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, EXTERNAL_DTD])
def test_entity_declarations_and_external_dtds_are_refused(body: bytes) -> None:
    with pytest.raises(BadRequest, match="refused"):
        parse(body)


@pytest.mark.parametrize(
    "body",
    [
        export(record("HeartRate", "count/min", "72"))[:-20],
        b"",
        b"<Other/>",
        b'{"samples": []}',
    ],
)
def test_a_body_that_is_not_an_export_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse(body)


def test_more_readings_than_allowed_is_refused() -> None:
    body = export(*(record("HeartRate", "count/min", "72") for _ in range(3)))
    with pytest.raises(TooManyReadings):
        parse(body, max_readings=2)


def test_a_large_export_is_read_in_chunks_as_a_stream() -> None:
    # ~3 MB: crosses several 1 MiB feed chunks, including records split between chunks.
    line = record("HeartRate", "count/min", "72", start="2020-09-01 08:01:10 +0200")
    body = export(*([line] * 15_000))
    stream = parse_export(body, SUBJECT, "fallback")
    first = next(stream)  # produced before the whole body is parsed
    assert isinstance(first, CandidateReading)
    assert 1 + sum(1 for _ in stream) == 15_000
