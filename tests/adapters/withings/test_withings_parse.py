"""WithingsAdapter.parse: pure, one item per reading, from recorded Withings responses."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.adapters import TooManyReadings
from gateway.adapters.withings import WITHINGS_USER_SYSTEM, WithingsAdapter
from gateway.errors import BadRequest, InvalidJSON, UnsupportedMediaType
from gateway.measures import normalise
from gateway.models import (
    CandidateReading,
    DeviceInfo,
    Identifier,
    ParsedItem,
    ParseRejection,
    Quantity,
    Reading,
    RejectionCode,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "withings"
JSON = "application/json"
USERID = "12345678"
SUBJECT = Identifier(WITHINGS_USER_SYSTEM, USERID)
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def parse(
    response: Any, *, userid: object = USERID, max_readings: int = 10_000
) -> list[ParsedItem]:
    envelope: dict[str, Any] = {"response": response}
    if userid is not None:
        envelope["userid"] = userid
    return WithingsAdapter(max_readings=max_readings).parse(orjson.dumps(envelope), JSON)


def getmeas(*groups: dict[str, Any], zone: str | None = "Europe/Paris") -> dict[str, Any]:
    body: dict[str, Any] = {"updatetime": 1700000000, "measuregrps": list(groups)}
    if zone is not None:
        body["timezone"] = zone
    return {"status": 0, "body": body}


def group(*measures: tuple[int, int, int], **changes: Any) -> dict[str, Any]:
    return {
        "grpid": 42,
        "attrib": 0,
        "date": 1693651151,  # 2023-09-02T10:39:11Z
        "created": 1693651185,
        "category": 1,
        "deviceid": "dev-1",
        "model": "BPM Connect",
        "measures": [{"value": v, "type": t, "unit": u} for t, v, u in measures],
        **changes,
    }


def readings(items: list[ParsedItem]) -> list[CandidateReading]:
    assert all(isinstance(item, CandidateReading) for item in items), items
    return [item for item in items if isinstance(item, CandidateReading)]


# --- getmeas -------------------------------------------------------------------------------------


def test_weight_exponent_is_applied_exactly() -> None:
    [weight] = readings(parse(getmeas(group((1, 74126, -3)))))
    assert weight.measure == "body-weight"
    assert weight.quantities == {"value": Quantity(74.126, "kg")}
    assert weight.vendor_record_id == "42:1"


def test_recorded_shimmer_getmeas_gives_each_measure_in_payload_order() -> None:
    items = parse(fixture("withings-body-measures.json"))
    kinds = [i.measure if isinstance(i, CandidateReading) else i.code for i in items]
    assert kinds == [
        "blood-pressure",
        "heart-rate",
        RejectionCode.UNSUPPORTED_TYPE,  # meastype 18
        "body-weight",
        "body-weight",
        "heart-rate",
        RejectionCode.UNSUPPORTED_TYPE,
        "heart-rate",
        RejectionCode.UNSUPPORTED_TYPE,
        "body-height",
        "body-temperature",
    ]
    assert items[3] == CandidateReading(
        subject=SUBJECT,
        device=DeviceInfo("withings-manual", None, "Withings"),
        measure="body-weight",
        quantities={"value": Quantity(74.126, "kg")},
        start=datetime(2015, 5, 30, 23, 6, 23, tzinfo=timezone(timedelta(hours=-7))),
        vendor_record_id="366956482:1",
        record_key="366956482:1",
    )


def test_diastolic_and_systolic_of_one_group_are_one_blood_pressure_reading() -> None:
    items = readings(parse(getmeas(group((9, 8200, -2), (10, 13600, -2), (11, 7100, -2)))))
    pressure, pulse = items
    assert pressure.measure == "blood-pressure"
    assert pressure.quantities == {
        "diastolic": Quantity(82, "mm[Hg]"),
        "systolic": Quantity(136, "mm[Hg]"),
    }
    assert pulse.measure == "heart-rate"
    assert pulse.quantities == {"value": Quantity(71, "/min")}

    reading = normalise(pressure, now=NOW)
    assert isinstance(reading, Reading)
    codes = {v.spec.name: v.spec.codings[0].code for v in reading.values}
    assert codes == {"systolic": "8480-6", "diastolic": "8462-4"}
    rate = normalise(pulse, now=NOW)
    assert isinstance(rate, Reading)
    assert rate.values[0].spec.ucum == "/min"


def test_a_lone_diastolic_measure_is_a_blood_pressure_missing_its_systolic() -> None:
    [pressure] = readings(parse(getmeas(group((9, 80, 0)))))
    rejection = normalise(pressure, now=NOW)
    assert not isinstance(rejection, Reading)
    assert rejection.code is RejectionCode.MISSING_COMPONENT


def test_height_in_metres_and_temperatures_map_to_their_measures() -> None:
    items = readings(
        parse(
            getmeas(group((4, 1930, -3), (12, 371, -1), (71, 37, 0), (73, 335, -1), (6, 2134, -2)))
        )
    )
    assert [(i.measure, i.quantities["value"]) for i in items] == [
        ("body-height", Quantity(1.93, "m")),
        ("body-temperature", Quantity(37.1, "Cel")),
        ("body-temperature", Quantity(37, "Cel")),
        ("skin-temperature", Quantity(33.5, "Cel")),
        ("body-fat-percentage", Quantity(21.34, "%")),
    ]
    height = normalise(items[0], now=NOW)
    assert isinstance(height, Reading)
    assert height.values[0].value == 193


def test_spo2_is_a_percentage_and_a_fraction_is_rejected_not_guessed() -> None:
    percent, fraction = readings(parse(getmeas(group((54, 97, 0)), group((54, 95, -2)))))
    assert isinstance(normalise(percent, now=NOW), Reading)
    rejection = normalise(fraction, now=NOW)
    assert not isinstance(rejection, Reading)
    assert rejection.code is RejectionCode.OUT_OF_RANGE


def test_unsupported_meastypes_are_rejected_naming_the_code() -> None:
    items = parse(getmeas(group((1, 70, 0), (76, 50, 0), (173, 12, 0))))
    assert items[1:] == [
        ParseRejection(RejectionCode.UNSUPPORTED_TYPE, "Withings meastype 76 is not supported"),
        ParseRejection(RejectionCode.UNSUPPORTED_TYPE, "Withings meastype 173 is not supported"),
    ]


def test_objective_groups_are_skipped() -> None:
    assert parse(fixture("withings-body-measures-only-goal.json")) == []


def test_every_measure_of_an_ambiguous_group_is_rejected_ambiguous_owner() -> None:
    items = parse(getmeas(group((9, 80, 0), (10, 120, 0), (11, 60, 0), attrib=1)))
    assert [i.code for i in items if isinstance(i, ParseRejection)] == [
        RejectionCode.AMBIGUOUS_OWNER
    ] * 3


def test_manual_entries_and_unusual_attribs_are_kept() -> None:
    excerpt = fixture("measurement_list.excerpt-0-69.json")[:3]  # attrib 2, 2, 17
    items = readings(parse({"status": 0, "body": {"measuregrps": excerpt}}))
    assert [i.measure for i in items] == [
        "body-height",
        "body-weight",
        "blood-pressure",
        "heart-rate",
    ]
    assert items[0].device == DeviceInfo("withings-manual", None, "Withings")
    assert items[2].device.model == "BPM Connect"
    assert items[2].quantities["systolic"] == Quantity(143, "mm[Hg]")


def test_the_duplicated_grpid_yields_the_same_reading_twice_for_dedup() -> None:
    first, second = readings(parse(fixture("measurement.json")))
    assert first == second
    assert first.quantities == {"value": Quantity(118.003, "kg")}
    assert first.device == DeviceInfo(
        "f998be4b9ccc9e136fd8cd8e8e344c31ec3b271d", "Body+", "Withings"
    )


def test_time_keeps_the_offset_of_the_body_timezone_at_that_instant() -> None:
    [summer] = readings(parse(getmeas(group((1, 70, 0)), zone="Europe/Amsterdam")))
    [winter] = readings(parse(getmeas(group((1, 70, 0), date=1703523863), zone="Europe/Paris")))
    assert summer.start.isoformat() == "2023-09-02T12:39:11+02:00"
    assert winter.start.utcoffset() == timedelta(hours=1)
    assert not summer.offset_assumed
    assert summer.vendor_time == datetime(2023, 9, 2, 10, 39, 45, tzinfo=UTC)


@pytest.mark.parametrize("zone", [None, "Mars/Olympus", "../../etc/passwd", 7])
def test_a_missing_or_unknown_timezone_means_utc_with_offset_assumed(zone: Any) -> None:
    response = getmeas(group((1, 70, 0)), zone=None)
    if zone is not None:
        response["body"]["timezone"] = zone
    [weight] = readings(parse(response))
    assert weight.offset_assumed
    assert weight.start == datetime(2023, 9, 2, 10, 39, 11, tzinfo=UTC)


BAD_MEASURES: list[tuple[dict[str, Any], str]] = [
    ({"type": 1, "value": "70", "unit": 0}, "response.body.measuregrps[0].measures[0].value"),
    ({"type": 1, "value": 70.5, "unit": 0}, "response.body.measuregrps[0].measures[0].value"),
    ({"type": 1, "value": 70}, "response.body.measuregrps[0].measures[0].unit"),
    ({"type": 1, "value": 70, "unit": 400}, "response.body.measuregrps[0].measures[0].unit"),
    ({"type": "weight", "value": 70, "unit": 0}, "response.body.measuregrps[0].measures[0].type"),
]


@pytest.mark.parametrize(("measure", "path"), BAD_MEASURES)
def test_a_malformed_measure_is_rejected_naming_its_path(
    measure: dict[str, Any], path: str
) -> None:
    [item] = parse(getmeas(group() | {"measures": [measure]}))
    assert isinstance(item, ParseRejection)
    assert item.code is RejectionCode.INVALID_READING
    assert item.message.startswith(path)
    assert "70" not in item.message


def test_a_malformed_group_is_one_rejection_per_measure_without_echoing_values() -> None:
    items = parse(getmeas(group((1, 70, 0), (11, 60, 0), date="2023-09-02"), group((1, 71, 0))))
    assert [type(i) for i in items] == [ParseRejection, ParseRejection, CandidateReading]
    assert items[0] == ParseRejection(
        RejectionCode.INVALID_READING,
        "response.body.measuregrps[0].date must be an integer between 0 and 253402300799",
    )


def test_a_malformed_blood_pressure_measure_rejects_the_pair_once() -> None:
    bad = group((9, 80, 0), (11, 60, 0))
    bad["measures"].append({"type": 10, "value": None, "unit": 0})
    items = parse(getmeas(bad))
    assert isinstance(items[0], ParseRejection)
    assert items[0].message.startswith("response.body.measuregrps[0].measures[2].value")
    assert isinstance(items[1], CandidateReading)
    assert len(items) == 2


def test_messages_never_echo_identifiers() -> None:
    canary = "CANARY-4711"
    items = parse(getmeas(group((1, 70, 0), deviceid=[canary], model=canary)), userid=canary)
    assert all(canary not in getattr(i, "message", "") for i in items)


# --- subject and envelope ----------------------------------------------------------------------


def test_the_subject_is_the_withings_userid_under_its_system() -> None:
    [weight] = readings(parse(getmeas(group((1, 70, 0))), userid=12345678))
    assert weight.subject == SUBJECT


def test_the_userid_may_come_from_the_response_body() -> None:
    response = getmeas(group((1, 70, 0)))
    response["body"]["userid"] = 12345678
    [weight] = readings(parse(response, userid=None))
    assert weight.subject == SUBJECT


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"status": 0, "body": {"measuregrps": []}},  # a bare response: whose data?
        {"userid": USERID},
        {"userid": USERID, "response": {"body": {"measuregrps": []}}},
        {"userid": USERID, "response": {"status": 0, "body": []}},
        {"userid": USERID, "response": {"status": 0, "body": {"measuregrps": {}}}},
        {"userid": True, "response": {"status": 0, "body": {"measuregrps": []}}},
        {"response": {"status": 0, "body": {"measuregrps": []}}},
        {"userid": "1", "response": {"status": 0, "body": {"userid": 2, "measuregrps": []}}},
        {"userid": USERID, "response": {"status": 401, "body": {}, "error": "invalid_token"}},
        {"userid": USERID, "response": fixture("withings-sleep-summary.json")},
        {"userid": USERID, "response": {"status": 0, "body": {"series": {"x1": {}}}}},
    ],
)
def test_a_body_that_is_not_the_envelope_of_a_supported_response_is_a_bad_request(
    document: Any,
) -> None:
    with pytest.raises(BadRequest):
        WithingsAdapter().parse(orjson.dumps(document), JSON)


def test_a_vendor_error_status_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="status"):
        parse({"status": 503, "body": {}})


def test_truncated_json_is_invalid_json() -> None:
    body = orjson.dumps({"userid": USERID, "response": fixture("measurement.json")})
    with pytest.raises(InvalidJSON):
        WithingsAdapter().parse(body[:-40], JSON)


def test_only_json_is_accepted() -> None:
    with pytest.raises(UnsupportedMediaType):
        WithingsAdapter().parse(b"{}", "application/x-ndjson")


def test_more_readings_than_the_limit_is_refused() -> None:
    response = getmeas(*[group((1, 70 + n, 0), grpid=n) for n in range(3)])
    assert len(parse(response, max_readings=3)) == 3
    with pytest.raises(TooManyReadings):
        parse(response, max_readings=2)


# --- Heart v2 list -----------------------------------------------------------------------------

# Shape from the Withings Public API reference, "Heart v2 - List" (no recorded sample exists).
HEART_LIST = {
    "status": 0,
    "body": {
        "series": [
            {
                "deviceid": "heart-dev",
                "model": 44,
                "ecg": {"signalid": 311, "afib": 0},
                "bloodpressure": {"diastole": 81, "systole": 127},
                "heart_rate": 64,
                "timestamp": 1703523863,
                "timezone": "Europe/Paris",
            },
            {"deviceid": "heart-dev", "model": 44, "heart_rate": 70, "timestamp": 1703527463},
        ],
        "more": False,
        "offset": 0,
    },
}


def test_heart_list_entries_give_blood_pressure_heart_rate_and_reject_the_ecg() -> None:
    items = parse(copy.deepcopy(HEART_LIST))
    pressure, rate, ecg, later = items
    assert isinstance(pressure, CandidateReading)
    assert pressure.measure == "blood-pressure"
    assert pressure.quantities == {
        "systolic": Quantity(127, "mm[Hg]"),
        "diastolic": Quantity(81, "mm[Hg]"),
    }
    assert pressure.start.isoformat() == "2023-12-25T18:04:23+01:00"
    assert pressure.device == DeviceInfo("heart-dev", "44", "Withings")
    assert pressure.vendor_record_id == "311:bloodpressure"
    assert isinstance(rate, CandidateReading)
    assert rate.quantities == {"value": Quantity(64, "/min")}
    assert isinstance(ecg, ParseRejection)
    assert ecg.code is RejectionCode.UNSUPPORTED_TYPE
    assert isinstance(later, CandidateReading)
    assert later.offset_assumed  # that entry has no timezone


def test_a_malformed_heart_value_is_rejected_alone() -> None:
    response = copy.deepcopy(HEART_LIST)
    response["body"]["series"][0]["bloodpressure"] = {"diastole": "81", "systole": 127}
    items = parse(response)
    assert isinstance(items[0], ParseRejection)
    assert items[0].message == (
        "response.body.series[0].bloodpressure.diastole must be a JSON number"
    )
    assert isinstance(items[1], CandidateReading)


# --- intraday activity ---------------------------------------------------------------------------


def test_intraday_steps_are_intervals_and_duration_only_entries_are_skipped() -> None:
    items = parse(fixture("withings-intraday-activity.json"))
    steps = readings([i for i in items if isinstance(i, CandidateReading)])
    assert [s.quantities["value"].value for s in steps] == [21, 47, 20, 74]
    first = steps[0]
    assert first.measure == "step-count"
    assert first.start == datetime.fromtimestamp(1434758640, UTC)
    assert first.end == first.start + timedelta(seconds=60)
    assert first.offset_assumed
    assert first.device == DeviceInfo("withings-unknown", None, "Withings")
    others = [i for i in items if isinstance(i, ParseRejection)]
    assert {r.message for r in others} == {
        f"Withings intraday field {name} is not supported"
        for name in ("calories", "distance", "elevation")
    }
    assert len(items) == 16


def test_intraday_heart_rate_and_spo2_are_points() -> None:
    response = {
        "status": 0,
        "body": {
            "series": {
                "1703523860": {"heart_rate": 61, "model": "ScanWatch", "deviceid": "w1"},
                "1703523920": {"spo2_auto": 96, "steps": None, "duration": 60},
                "1703523980": {"steps": 12},
            }
        },
    }
    rate, spo2, steps = parse(response)
    assert isinstance(rate, CandidateReading)
    assert (rate.measure, rate.end, rate.device.model) == ("heart-rate", None, "ScanWatch")
    assert isinstance(spo2, CandidateReading)
    assert spo2.quantities == {"value": Quantity(96, "%")}
    assert isinstance(steps, ParseRejection)  # steps need the entry's duration
    assert (
        steps.message
        == "response.body.series (entry 2).duration must be an integer between 1 and 86400"
    )
