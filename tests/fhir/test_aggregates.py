"""Aggregate readings (a statistic over a period) and the offset-assumed flag in the Observation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from fhir.resources.R4B.observation import Observation

from gateway.fhir import build_observation
from gateway.fhir.observation import OFFSET_ASSUMED_URL, STATISTIC_URL
from gateway.measures import MEASURES
from gateway.models import DeviceInfo, Identifier, IngestContext, MeasuredValue, Reading

START = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
CTX = IngestContext("cn", "acme", "omh", "1", START + timedelta(days=2), "req-1")


def render(*, statistic: str | None, offset_assumed: bool) -> dict[str, object]:
    measure = MEASURES["heart-rate"]
    reading = Reading(
        subject=Identifier("urn:x", "1"),
        device=DeviceInfo("d"),
        measure=measure,
        values=(MeasuredValue(measure.components[0], 50.0),),
        start=START,
        end=START + timedelta(days=1),
        offset_assumed=offset_assumed,
        statistic=statistic,
    )
    row = build_observation(reading, observation_id="o1-a", subject="s1-a", device="d1-a", ctx=CTX)
    resource: dict[str, object] = orjson.loads(row.resource)
    Observation.model_validate(resource)
    return resource


def test_a_statistic_is_an_extension_on_an_observation_with_a_period() -> None:
    resource = render(statistic="minimum", offset_assumed=False)
    assert resource["extension"] == [{"url": STATISTIC_URL, "valueCode": "minimum"}]
    assert resource["effectivePeriod"] == {
        "start": "2026-11-29T00:00:00+00:00",
        "end": "2026-11-30T00:00:00+00:00",
    }
    assert "effectiveDateTime" not in resource


def test_a_statistic_and_an_assumed_offset_are_both_recorded() -> None:
    resource = render(statistic="20th percentile", offset_assumed=True)
    assert resource["extension"] == [
        {"url": OFFSET_ASSUMED_URL, "valueBoolean": True},
        {"url": STATISTIC_URL, "valueCode": "20th percentile"},
    ]


def test_a_raw_reading_has_no_statistic_extension() -> None:
    assert "extension" not in render(statistic=None, offset_assumed=False)
    assert render(statistic=None, offset_assumed=True)["extension"] == [
        {"url": OFFSET_ASSUMED_URL, "valueBoolean": True}
    ]
