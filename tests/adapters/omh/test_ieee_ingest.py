"""POST /v1/ingest/omh with IEEE 1752.1 (`ieee` namespace) data points: real HTTP and PostgreSQL.

Samples: tests/fixtures/omh/ieee/ (see its SOURCES.md). The published 1752.1 test data are bare
bodies and time frames; the physical-activity data point is constructed (none is published).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

from tests.adapters.omh.samples import SUBJECT, USER_ID
from tests.adapters.omh.test_omh_ingest import post
from tests.conftest import Gateway
from tests.helpers import stored_observations

IEEE = Path(__file__).parents[2] / "fixtures" / "omh" / "ieee"
PUBLISHED = IEEE / "test-data" / "ieee"
STEPS_POINT = IEEE / "constructed" / "physical-activity-steps.json"
LOINC_STEPS = "55423-8"


def published(name: str, kind: str, file: str) -> Any:
    return json.loads((PUBLISHED / name / "1.0" / f"should{kind}" / file).read_text())


def physical_activity(**body: Any) -> dict[str, Any]:
    point: dict[str, Any] = json.loads(STEPS_POINT.read_text())
    point["body"] |= body
    return point


def wrapped(name: str, body: Any, uuid: str) -> dict[str, Any]:
    """A published bare 1752.1 body under an IEEE 1752.1 header naming its own schema."""
    point = physical_activity()
    point["header"] |= {
        "uuid": uuid,
        "schema_id": {"namespace": "ieee", "name": name, "version": "1.0"},
    }
    point["body"] = body
    return point


async def test_an_ieee_physical_activity_in_steps_is_stored_as_a_step_count(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-IEEE-1", extra=[SUBJECT])
    status, body = await post(gateway, STEPS_POINT.read_bytes())

    assert status == 200, body
    assert body["results"][0]["outcome"] == "created"
    [resource] = await stored_observations(zone_dsns["cn"])
    Observation.model_validate(resource)
    assert [c["code"] for c in resource["code"]["coding"] if "loinc" in c["system"]] == [
        LOINC_STEPS
    ]
    assert resource["valueQuantity"]["value"] == 4200
    assert resource["valueQuantity"]["code"] == "{steps}"
    # The data point's own offsets are kept.
    assert resource["effectivePeriod"] == {
        "start": "2026-11-30T08:00:00+08:00",
        "end": "2026-11-30T09:00:00+08:00",
    }


async def test_the_published_ieee_time_intervals_are_accepted_as_the_activity_time_frame(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    await gateway.enrol("cn", "MRN-IEEE-1", extra=[SUBJECT])
    frames = [
        {"time_interval": published("time-interval", "Pass", file)}
        for file in ("start-time-end-time.json", "start-time-duration.json",
                     "end-time-duration.json")
    ] + [published("time-frame", "Pass", "time-interval.json")]  # fmt: skip
    steps = {"value": 1500, "unit": "steps"}
    points = [
        physical_activity(effective_time_frame=frame, base_movement_quantity=steps)
        for frame in frames
    ]
    status, body = await post(gateway, orjson.dumps(points))

    assert status == 200, body
    assert [r["outcome"] for r in body["results"]] == ["created"] * len(frames)
    stored = await stored_observations(zone_dsns["cn"])
    assert sorted(r["effectivePeriod"]["start"] for r in stored) == [
        "2013-01-25T09:59:00+00:00",  # end 2013-02-05T07:35Z - 10.9 d
        "2013-01-28T17:11:00+00:00",  # end - 7.6 d (time-frame shouldPass)
        "2013-02-05T07:25:00+00:00",  # start-time-end-time
        "2013-02-05T07:25:00+00:00",  # start-time-duration (ends 10.2 d later)
    ]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        # The schema restricts effective_time_frame to a time interval.
        (published("time-frame", "Pass", "date-time.json"), "invalid-reading"),
        (published("time-frame", "Fail", "empty-document.json"), "invalid-reading"),
        (published("time-frame", "Fail", "time-interval-and-date-time.json"), "invalid-reading"),
        ({"time_interval": published("time-interval", "Fail", "duration-only.json")},
         "invalid-reading"),
        ({"time_interval": published("time-interval", "Fail", "empty-document.json")},
         "invalid-reading"),
        ({"time_interval": published("time-interval", "Fail", "end-time-only.json")},
         "invalid-reading"),
        ({"time_interval": published("time-interval", "Fail", "start-time-only.json")},
         "invalid-reading"),
        # Open mHealth's date + part_of_day interval is not an IEEE time interval.
        ({"time_interval": {"date": "2026-11-30", "part_of_day": "morning"}}, "invalid-reading"),
        # IEEE date-times are offset date-times: no "missing offset means UTC" as in omh.
        ({"time_interval": {"start_date_time": "2026-11-30T08:00:00",
                            "end_date_time": "2026-11-30T09:00:00"}}, "missing-offset"),
    ],
)  # fmt: skip
async def test_an_ieee_time_frame_that_is_not_an_offset_time_interval_is_refused(
    gateway: Gateway, zone_dsns: dict[str, str], frame: Any, code: str
) -> None:
    await gateway.enrol("cn", "MRN-IEEE-1", extra=[SUBJECT])
    status, body = await post(gateway, orjson.dumps(physical_activity(effective_time_frame=frame)))

    assert status == 422, body
    assert body["results"][0]["error"]["code"] == code
    assert await stored_observations(zone_dsns["cn"]) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"base_movement_quantity": {"value": 40, "unit": "laps"}}, "unit-not-convertible"),
        ({"base_movement_quantity": {"value": 900, "unit": "strokes"}}, "unit-not-convertible"),
        ({"base_movement_quantity": None}, "missing-component"),
        ({"base_movement_quantity": {"value": "4200", "unit": "steps"}}, "invalid-reading"),
        ({"activity_name": None}, "invalid-reading"),
    ],
)
async def test_a_physical_activity_that_is_not_a_step_count_is_refused_with_its_reason(
    gateway: Gateway, zone_dsns: dict[str, str], body: dict[str, Any], code: str
) -> None:
    await gateway.enrol("cn", "MRN-IEEE-1", extra=[SUBJECT])
    point = physical_activity(**body)
    point["body"] = {key: value for key, value in point["body"].items() if value is not None}
    status, answer = await post(gateway, orjson.dumps(point))

    assert status == 422, answer
    assert answer["results"][0]["error"]["code"] == code
    assert await stored_observations(zone_dsns["cn"]) == []


@pytest.mark.parametrize(
    ("name", "kind", "file"),
    [
        ("ambient-sound", "Pass", "valid-ambient-sound.json"),
        ("ambient-sound", "Fail", "invalid-ambient-sound.json"),
        ("body-posture", "Pass", "valid-posture.json"),
        ("body-posture", "Fail", "invalid-posture.json"),
    ],
)
async def test_an_unsupported_ieee_schema_is_refused_naming_the_schema_not_its_values(
    gateway: Gateway, zone_dsns: dict[str, str], name: str, kind: str, file: str
) -> None:
    await gateway.enrol("cn", "MRN-IEEE-1", extra=[SUBJECT])
    sample = published(name, kind, file)
    status, body = await post(gateway, orjson.dumps(wrapped(name, sample, f"ieee-{name}-{kind}")))

    assert status == 422, body
    error = body["results"][0]["error"]
    assert error["code"] == "unsupported-type"
    assert f"ieee:{name}" in error["message"]
    assert "ieee:physical-activity" in error["message"]  # the supported schemas are listed
    for value in ("75", "dB", "deciB", "semi-recumbent", "stnding", USER_ID):
        assert value not in error["message"]
    assert await stored_observations(zone_dsns["cn"]) == []


async def test_an_ieee_schema_of_an_unchecked_major_version_is_unsupported(
    gateway: Gateway,
) -> None:
    await gateway.enrol("cn", "MRN-IEEE-1", extra=[SUBJECT])
    point = physical_activity()
    point["header"]["schema_id"]["version"] = "2.0"
    status, body = await post(gateway, orjson.dumps(point))

    assert status == 422
    assert body["results"][0]["error"]["code"] == "unsupported-type"
    assert "ieee:physical-activity" in body["results"][0]["error"]["message"]
