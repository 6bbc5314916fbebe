from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.lexical import is_fhir_string
from gateway.measures import MEASURES, normalise
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    Interpretation,
    Quantity,
    Reading,
    Rejection,
    RejectionCode,
)

SHANGHAI = timezone(timedelta(hours=8))
BERLIN_WINTER = timezone(timedelta(hours=1))
NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # = 09:00 in Shanghai
TAKEN = datetime(2026, 11, 30, 8, 0, tzinfo=SHANGHAI)

SUBJECT_CANARY = "MRN-CANARY-55501"
DEVICE_CANARY = "SN-CANARY-77702"
RECORD_CANARY = "REC-CANARY-99903"
VALUE_CANARY = 87.654321


def candidate(
    measure: str = "heart-rate",
    quantities: Mapping[str, Quantity] | None = None,
    *,
    start: datetime = TAKEN,
    end: datetime | None = None,
    offset_assumed: bool = False,
) -> CandidateReading:
    return CandidateReading(
        subject=Identifier("urn:oid:1.2.156.112604.1.2.1", SUBJECT_CANARY),
        device=DeviceInfo(DEVICE_CANARY, "Watch 5", "Acme"),
        measure=measure,
        quantities={"value": Quantity(72, "/min")} if quantities is None else quantities,
        start=start,
        end=end,
        vendor_record_id=RECORD_CANARY,
        vendor_time=datetime(2026, 11, 30, 0, 0, 5, tzinfo=UTC),
        offset_assumed=offset_assumed,
        declared_zone="cn",
    )


def one(value: float, unit: str) -> dict[str, Quantity]:
    return {"value": Quantity(value, unit)}


def bp(systolic: float = 121, diastolic: float = 79, **more: float) -> dict[str, Quantity]:
    values = {"systolic": systolic, "diastolic": diastolic, **more}
    return {name: Quantity(v, "mm[Hg]") for name, v in values.items()}


def accepted(c: CandidateReading) -> Reading:
    result = normalise(c, now=NOW)
    assert isinstance(result, Reading), result
    return result


def rejected(c: CandidateReading) -> Rejection:
    result = normalise(c, now=NOW)
    assert isinstance(result, Rejection), result
    return result


# --- accepted readings --------------------------------------------------------------------------


def test_a_plain_heart_rate_is_accepted_unchanged() -> None:
    reading = accepted(candidate())
    (value,) = reading.values
    assert (value.value, value.spec.ucum, value.interpretation) == (72, "/min", None)
    assert reading.measure is MEASURES["heart-rate"]


def test_the_reading_keeps_the_payload_context() -> None:
    c = candidate()
    reading = accepted(c)
    assert reading.subject == c.subject
    # The device keeps its id; its description becomes closed-table values.
    assert reading.device == DeviceInfo(DEVICE_CANARY, model="other", manufacturer="other")
    assert (reading.vendor_record_id, reading.vendor_time) == (RECORD_CANARY, c.vendor_time)
    assert (reading.declared_zone, reading.offset_assumed, reading.end) == ("cn", False, None)


def test_the_original_utc_offset_is_kept() -> None:
    reading = accepted(candidate(start=TAKEN))
    assert reading.start.utcoffset() == timedelta(hours=8)
    assert reading.start.isoformat() == "2026-11-30T08:00:00+08:00"


@pytest.mark.parametrize(
    ("measure", "quantity", "expected"),
    [
        ("body-weight", Quantity(165, "[lb_av]"), 74.84274),
        ("body-weight", Quantity(165, "lb"), 74.84274),
        ("body-weight", Quantity(74126, "g"), 74.126),
        ("body-temperature", Quantity(98.6, "[degF]"), 37.0),
        ("body-temperature", Quantity(310.15, "K"), 37.0),
        ("body-temperature", Quantity(36.6, "degC"), 36.6),
        ("blood-glucose", Quantity(5.5, "mmol/L"), 99.09),
        ("body-height", Quantity(1.8, "m"), 180.0),
        ("body-height", Quantity(70, "[in_i]"), 177.8),
        ("heart-rate", Quantity(72, "bpm"), 72.0),
        ("heart-rate", Quantity(72, "count/min"), 72.0),
        ("respiratory-rate", Quantity(16, "breaths/min"), 16.0),
        ("body-mass-index", Quantity(22.5, "kg/m^2"), 22.5),
        ("heart-rate-variability-sdnn", Quantity(0.045, "s"), 45.0),
    ],
)
def test_units_are_converted_to_the_canonical_ucum_unit(
    measure: str, quantity: Quantity, expected: float
) -> None:
    (value,) = accepted(candidate(measure, {"value": quantity})).values
    assert value.value == pytest.approx(expected, abs=0.005)
    assert value.spec.ucum == MEASURES[measure].components[0].ucum


def test_converted_values_are_rounded_to_six_decimals() -> None:
    (weight,) = accepted(candidate("body-weight", one(165, "[lb_av]"))).values
    (temperature,) = accepted(candidate("body-temperature", one(98.6, "[degF]"))).values
    assert weight.value == 74.842741
    assert temperature.value == 37.0


def test_unconverted_values_keep_full_precision() -> None:
    (value,) = accepted(candidate("body-weight", one(74.12345678901, "kg"))).values
    assert value.value == 74.12345678901


@pytest.mark.parametrize(
    ("measure", "quantity", "flag"),
    [
        ("heart-rate", Quantity(30, "/min"), Interpretation.LOW),
        ("heart-rate", Quantity(210, "/min"), Interpretation.HIGH),
        ("heart-rate", Quantity(35, "/min"), None),
        ("heart-rate", Quantity(200, "/min"), None),
        ("oxygen-saturation", Quantity(85, "%"), Interpretation.LOW),
        ("oxygen-saturation", Quantity(100, "%"), None),
        ("body-temperature", Quantity(102.2, "[degF]"), None),  # 39.0 Cel: on the bound
        ("body-temperature", Quantity(102.56, "[degF]"), Interpretation.HIGH),  # 39.2 Cel
        ("body-weight", Quantity(600, "kg"), None),  # no soft range
    ],
)
def test_values_outside_the_soft_range_are_flagged(
    measure: str, quantity: Quantity, flag: Interpretation | None
) -> None:
    (value,) = accepted(candidate(measure, {"value": quantity})).values
    assert value.interpretation is flag


def test_blood_pressure_components_are_flagged_one_by_one_and_ordered_like_the_table() -> None:
    quantities = {
        "mean": Quantity(80, "mmHg"),
        "diastolic": Quantity(45, "mmHg"),
        "systolic": Quantity(120, "mmHg"),
    }
    reading = accepted(candidate("blood-pressure", quantities))
    assert [(v.spec.name, v.value, v.interpretation) for v in reading.values] == [
        ("systolic", 120, None),
        ("diastolic", 45, Interpretation.LOW),
        ("mean", 80, None),
    ]


def test_the_optional_mean_pressure_may_be_absent() -> None:
    reading = accepted(candidate("blood-pressure", bp()))
    assert [v.spec.name for v in reading.values] == ["systolic", "diastolic"]


def test_a_point_measure_may_carry_a_period() -> None:
    end = TAKEN + timedelta(minutes=1)
    reading = accepted(candidate(end=end))
    assert (reading.start, reading.end) == (TAKEN, end)


def test_a_step_count_over_an_hour_is_accepted() -> None:
    end = TAKEN + timedelta(hours=1)
    reading = accepted(candidate("step-count", one(5000, "steps"), end=end))
    assert (reading.values[0].value, reading.values[0].spec.ucum) == (5000, "{steps}")
    assert reading.end == end


def test_a_naive_time_is_read_as_utc_when_the_format_says_so() -> None:
    naive = datetime(2026, 11, 30, 0, 30)  # noqa: DTZ001 - the input under test is naive
    reading = accepted(candidate(start=naive, offset_assumed=True))
    assert reading.start == datetime(2026, 11, 30, 0, 30, tzinfo=UTC)
    assert reading.offset_assumed


def test_a_reading_within_the_allowed_clock_skew_is_accepted() -> None:
    accepted(candidate(start=NOW + timedelta(minutes=4, seconds=59)))


# --- rejections ---------------------------------------------------------------------------------


def test_an_unknown_measure_is_unsupported() -> None:
    rejection = rejected(candidate("blood-alcohol", one(0.1, "%")))
    assert rejection.code is RejectionCode.UNSUPPORTED_TYPE
    assert "heart-rate" in rejection.message


@pytest.mark.parametrize(
    ("measure", "quantities"),
    [
        ("heart-rate", {"systolic": Quantity(120, "mm[Hg]")}),
        ("heart-rate", {"value": Quantity(72, "/min"), "pulse": Quantity(72, "/min")}),
        ("blood-pressure", bp(pulse=70)),
        ("blood-pressure", {**bp(), "value": Quantity(120, "mm[Hg]")}),
    ],
)
def test_a_quantity_the_measure_does_not_have_is_an_unknown_component(
    measure: str, quantities: dict[str, Quantity]
) -> None:
    assert rejected(candidate(measure, quantities)).code is RejectionCode.UNKNOWN_COMPONENT


@pytest.mark.parametrize(
    ("measure", "quantities"),
    [
        ("blood-pressure", {"systolic": Quantity(120, "mm[Hg]")}),
        ("blood-pressure", {"diastolic": Quantity(80, "mm[Hg]")}),
        ("heart-rate", {}),
    ],
)
def test_a_missing_required_component_is_rejected(
    measure: str, quantities: dict[str, Quantity]
) -> None:
    assert rejected(candidate(measure, quantities)).code is RejectionCode.MISSING_COMPONENT


@pytest.mark.parametrize(
    ("measure", "quantities"),
    [
        ("heart-rate", one(72, "mm[Hg]")),
        ("heart-rate", one(72, "Hz")),
        ("oxygen-saturation", one(0.97, "1")),  # HealthKit fractions are the adapter's job
        ("body-temperature", one(37, "cel")),  # UCUM codes are case-sensitive
        ("blood-pressure", {**bp(), "diastolic": Quantity(80, "kPa")}),
    ],
)
def test_a_unit_that_is_not_accepted_is_not_convertible(
    measure: str, quantities: dict[str, Quantity]
) -> None:
    rejection = rejected(candidate(measure, quantities))
    assert rejection.code is RejectionCode.UNIT_NOT_CONVERTIBLE
    assert "accepted units:" in rejection.message


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_not_numbers(bad: float) -> None:
    assert rejected(candidate(quantities=one(bad, "/min"))).code is RejectionCode.NOT_A_NUMBER
    panel = candidate("blood-pressure", bp(diastolic=bad))
    assert rejected(panel).code is RejectionCode.NOT_A_NUMBER


@pytest.mark.parametrize(
    ("measure", "quantities"),
    [
        ("heart-rate", one(301, "/min")),
        ("heart-rate", one(19.9, "bpm")),
        ("body-temperature", one(113.5, "[degF]")),  # 45.28 Cel
        ("body-weight", one(1500, "lb")),  # 680 kg
        ("body-height", one(2.8, "m")),
        ("blood-glucose", one(56, "mmol/L")),  # 1009 mg/dL
        ("blood-glucose", one(-1, "mg/dL")),
        ("blood-pressure", bp(systolic=301)),
        ("blood-pressure", bp(mean=20)),
        ("step-count", one(-1, "{steps}")),
    ],
)
def test_values_outside_the_hard_range_are_rejected_after_conversion(
    measure: str, quantities: dict[str, Quantity]
) -> None:
    end = TAKEN + timedelta(hours=1) if MEASURES[measure].interval else None
    rejection = rejected(candidate(measure, quantities, end=end))
    assert rejection.code is RejectionCode.OUT_OF_RANGE


def test_the_range_message_names_measure_bounds_and_unit() -> None:
    rejection = rejected(candidate(quantities=one(301, "/min")))
    assert rejection.message == "heart-rate value is outside the accepted range 20-300 /min"


def test_a_value_in_range_only_after_conversion_is_accepted() -> None:
    accepted(candidate("body-weight", one(1000, "lb")))  # 453.6 kg; 1000 kg would be rejected
    assert rejected(candidate("body-weight", one(1000, "kg"))).code is RejectionCode.OUT_OF_RANGE


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 11, 30, 8, 0), None),  # noqa: DTZ001 - naive input under test
        (TAKEN, datetime(2026, 11, 30, 8, 5)),  # noqa: DTZ001 - naive input under test
    ],
)
def test_a_time_without_utc_offset_is_rejected(start: datetime, end: datetime | None) -> None:
    assert rejected(candidate(start=start, end=end)).code is RejectionCode.MISSING_OFFSET


@pytest.mark.parametrize(
    "offset",
    [timedelta(hours=14, minutes=30), timedelta(hours=-15), timedelta(hours=5, seconds=30)],
)
def test_a_utc_offset_fhir_cannot_express_is_an_invalid_reading(offset: timedelta) -> None:
    start = datetime(2026, 11, 29, 12, 0, tzinfo=timezone(offset))
    assert rejected(candidate(start=start)).code is RejectionCode.INVALID_READING


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (NOW + timedelta(minutes=6), None),
        (datetime(2026, 11, 30, 9, 6, tzinfo=SHANGHAI), None),  # same instant, other offset
        (TAKEN, NOW + timedelta(hours=1)),
    ],
)
def test_a_time_beyond_the_clock_skew_is_in_the_future(
    start: datetime, end: datetime | None
) -> None:
    rejection = rejected(candidate(start=start, end=end))
    assert rejection.code is RejectionCode.FUTURE_TIMESTAMP
    assert "5 min" in rejection.message


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(1899, 12, 31, 23, 59, tzinfo=UTC), None),
        # Year 1 at a positive offset is before 0001-01-01 in UTC: it must be refused, not crash.
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=3))), None),
        (datetime(1, 1, 1, tzinfo=UTC), TAKEN),
    ],
)
def test_a_time_before_1900_is_an_invalid_reading(start: datetime, end: datetime | None) -> None:
    rejection = rejected(candidate(start=start, end=end))
    assert rejection.code is RejectionCode.INVALID_READING
    assert "1900" in rejection.message


def test_1900_itself_is_accepted() -> None:
    result = normalise(candidate(start=datetime(1900, 1, 1, tzinfo=UTC)), now=NOW)
    assert not isinstance(result, Rejection)


def test_the_clock_skew_is_configurable() -> None:
    c = candidate(start=NOW + timedelta(minutes=1))
    result = normalise(c, now=NOW, max_future_skew=timedelta(0))
    assert isinstance(result, Rejection)
    assert result.code is RejectionCode.FUTURE_TIMESTAMP


@pytest.mark.parametrize(
    ("measure", "quantities", "end"),
    [
        ("step-count", one(100, "{steps}"), None),
        ("step-count", one(100, "{steps}"), TAKEN),
        ("step-count", one(100, "{steps}"), TAKEN - timedelta(minutes=1)),
        ("heart-rate", one(72, "/min"), TAKEN - timedelta(seconds=1)),
    ],
)
def test_a_missing_or_reversed_interval_is_invalid(
    measure: str, quantities: dict[str, Quantity], end: datetime | None
) -> None:
    rejection = rejected(candidate(measure, quantities, end=end))
    assert rejection.code is RejectionCode.INVALID_INTERVAL


def test_an_interval_across_offsets_is_compared_as_instants() -> None:
    end = datetime(2026, 11, 30, 1, 30, tzinfo=BERLIN_WINTER)  # 08:30 in Shanghai
    reading = accepted(candidate("step-count", one(100, "{steps}"), end=end))
    assert reading.end is not None
    assert reading.end.utcoffset() == timedelta(hours=1)


def test_more_than_300_steps_a_minute_is_out_of_range() -> None:
    ten_minutes = TAKEN + timedelta(minutes=10)
    accepted(candidate("step-count", one(3000, "{steps}"), end=ten_minutes))
    rejection = rejected(candidate("step-count", one(3001, "{steps}"), end=ten_minutes))
    assert rejection.code is RejectionCode.OUT_OF_RANGE
    assert rejection.message == "step-count exceeds 300 per minute of the interval"


def test_more_than_100000_steps_is_out_of_range_however_long_the_interval() -> None:
    start = TAKEN - timedelta(days=3)
    rejection = rejected(candidate("step-count", one(100_001, "{steps}"), start=start, end=TAKEN))
    assert rejection.code is RejectionCode.OUT_OF_RANGE


@pytest.mark.parametrize(("systolic", "diastolic"), [(80, 80), (70, 90)])
def test_systolic_must_be_above_diastolic(systolic: float, diastolic: float) -> None:
    rejection = rejected(candidate("blood-pressure", bp(systolic, diastolic)))
    assert rejection.code is RejectionCode.SYSTOLIC_NOT_ABOVE_DIASTOLIC


# --- messages never carry values or identifiers -------------------------------------------------


REJECTED_WITH_CANARY = [
    candidate("blood-alcohol", one(VALUE_CANARY, "%")),
    candidate("heart-rate", {"value": Quantity(VALUE_CANARY, "/min"), "x": Quantity(1, "/min")}),
    candidate("blood-pressure", {"systolic": Quantity(VALUE_CANARY, "mm[Hg]")}),
    candidate("heart-rate", one(VALUE_CANARY, "mm[Hg]")),
    candidate("heart-rate", one(VALUE_CANARY, str(VALUE_CANARY))),
    candidate("body-temperature", one(VALUE_CANARY, "Cel")),
    candidate("body-weight", one(VALUE_CANARY * 100, "kg")),
    candidate("heart-rate", one(VALUE_CANARY, "/min"), start=datetime(2026, 11, 30, 8)),  # noqa: DTZ001
    candidate("heart-rate", one(VALUE_CANARY, "/min"), start=NOW + timedelta(days=1)),
    candidate("step-count", one(VALUE_CANARY, "{steps}")),
    candidate("step-count", one(VALUE_CANARY, "{steps}"), end=TAKEN + timedelta(seconds=6)),
    candidate("blood-pressure", bp(VALUE_CANARY, VALUE_CANARY)),
]


@pytest.mark.parametrize("c", REJECTED_WITH_CANARY)
def test_rejection_messages_never_contain_values_or_identifiers(c: CandidateReading) -> None:
    message = rejected(c).message
    for canary in ("87.65", "8765", SUBJECT_CANARY, DEVICE_CANARY, RECORD_CANARY, "Watch 5"):
        assert canary not in message


def test_every_rejection_code_of_normalise_is_exercised_by_the_canary_cases() -> None:
    codes = {rejected(c).code for c in REJECTED_WITH_CANARY}
    assert codes >= {
        RejectionCode.UNSUPPORTED_TYPE,
        RejectionCode.UNKNOWN_COMPONENT,
        RejectionCode.MISSING_COMPONENT,
        RejectionCode.UNIT_NOT_CONVERTIBLE,
        RejectionCode.OUT_OF_RANGE,
        RejectionCode.MISSING_OFFSET,
        RejectionCode.FUTURE_TIMESTAMP,
        RejectionCode.INVALID_INTERVAL,
        RejectionCode.SYSTOLIC_NOT_ABOVE_DIASTOLIC,
    }


any_value = st.one_of(st.floats(), st.integers(-(10**6), 10**6).map(float))
units = st.sampled_from(["/min", "bpm", "mm[Hg]", "Cel", "[degF]", "kg", "lb", "%", "?"])


@given(measure=st.sampled_from([*MEASURES, "unknown"]), unit=units, a=any_value, b=any_value)
def test_a_rejection_message_does_not_depend_on_the_value(
    measure: str, unit: str, a: float, b: float
) -> None:
    name = "systolic" if MEASURES.get(measure, MEASURES["heart-rate"]).panel else "value"
    end = TAKEN + timedelta(hours=1)
    results = [
        normalise(
            candidate(measure, {**bp(), name: Quantity(v, unit)}, end=end)
            if name == "systolic"
            else candidate(measure, {name: Quantity(v, unit)}, end=end),
            now=NOW,
        )
        for v in (a, b)
    ]
    if all(isinstance(r, Rejection) for r in results):
        first, second = results
        assert isinstance(first, Rejection)
        assert isinstance(second, Rejection)
        if first.code is second.code:
            assert first.message == second.message


# Identifiers as FHIR strings may be (no control characters below U+0020 but tab, LF, CR).
fhir_text = st.text(min_size=1).filter(is_fhir_string)


@given(subject=fhir_text, device=fhir_text, value=any_value)
def test_a_rejection_message_does_not_depend_on_identifiers(
    subject: str, device: str, value: float
) -> None:
    base = candidate("body-temperature", one(value, "Cel"))
    other = replace(base, subject=Identifier("urn:x", subject), device=DeviceInfo(device))
    first, second = normalise(base, now=NOW), normalise(other, now=NOW)
    assert type(first) is type(second)
    if isinstance(first, Rejection):
        assert first == second


@given(
    text=st.text(min_size=1).map(lambda t: t + "\x00"),
    field=st.sampled_from(["subject", "device", "model", "unit", "statistic"]),
)
def test_a_control_character_in_any_text_field_is_an_invalid_reading_that_names_the_field(
    text: str, field: str
) -> None:
    base = candidate("body-temperature", one(37.0, "Cel"))
    other = {
        "subject": replace(base, subject=Identifier("urn:x", text)),
        "device": replace(base, device=DeviceInfo(text)),
        "model": replace(base, device=DeviceInfo("SN-1", model=text)),
        "unit": replace(base, quantities={"value": Quantity(37.0, text)}),
        "statistic": replace(base, statistic=text),
    }[field]
    rejection = normalise(other, now=NOW)
    assert isinstance(rejection, Rejection)
    assert rejection.code is RejectionCode.INVALID_READING
    assert text not in rejection.message


@given(kg=st.floats(min_value=0.3, max_value=650))
def test_pounds_round_trip_to_kilograms(kg: float) -> None:
    (value,) = accepted(candidate("body-weight", one(kg / 0.45359237, "[lb_av]"))).values
    assert value.value == pytest.approx(kg, abs=1e-6)


@given(celsius=st.floats(min_value=25, max_value=45))
def test_fahrenheit_round_trips_to_celsius(celsius: float) -> None:
    result = normalise(candidate("body-temperature", one(celsius * 9 / 5 + 32, "[degF]")), now=NOW)
    if isinstance(result, Reading):
        assert result.values[0].value == pytest.approx(celsius, abs=1e-6)
    else:  # only the rounding at the exact bounds may tip a value out of range
        assert result.code is RejectionCode.OUT_OF_RANGE
        assert min(abs(celsius - 25), abs(celsius - 45)) < 1e-6
