"""De-identified Observations: an allow-list, shifted UTC times, study ids, and nothing that
links back to the subject, the device or the zone's data."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation
from hypothesis import given
from hypothesis import strategies as st

from gateway.deid import (
    DeidPolicy,
    DeidReport,
    ExclusionReason,
    ResourceExcluded,
    TimestampResolution,
    deidentify_observation,
)
from gateway.deid.timestamps import parse_instant
from gateway.fhir.observation import OFFSET_ASSUMED_URL, STATISTIC_URL
from gateway.measures import MEASURES
from gateway.privacy.deid_keys import date_shift
from tests.deid.common import (
    CANARIES,
    OBSERVATION_ID,
    POLICY,
    RING,
    SHIFT,
    STUDY,
    STUDY_SUBJECT,
    ZONE_SUBJECT,
    every_kind,
    reading_of,
    stored,
    study_id_of,
)

EVERY_KIND = every_kind()
HEART_RATE = MEASURES["heart-rate"]


def deidentify(
    resource: dict[str, Any],
    *,
    shift: timedelta = SHIFT,
    policy: DeidPolicy = POLICY,
    device_id: Callable[[str], str] | None = None,
) -> tuple[dict[str, Any], DeidReport]:
    return deidentify_observation(
        resource,
        study_subject=STUDY_SUBJECT,
        shift=shift,
        policy=policy,
        resource_id=study_id_of,
        device_id=device_id,
    )


def heart_rate() -> dict[str, Any]:
    return stored(reading_of(HEART_RATE))


def timestamps(resource: dict[str, Any]) -> list[str]:
    period = resource.get("effectivePeriod", {})
    found = [resource.get("effectiveDateTime"), period.get("start"), period.get("end")]
    return [t for t in [*found, resource.get("issued")] if t is not None]


@pytest.mark.parametrize("resource", [r for _, r in EVERY_KIND], ids=[i for i, _ in EVERY_KIND])
def test_every_deidentified_observation_is_valid_fhir_r4(resource: dict[str, Any]) -> None:
    out, _ = deidentify(resource)
    Observation.model_validate_json(orjson.dumps(out))


@pytest.mark.parametrize("resource", [r for _, r in EVERY_KIND], ids=[i for i, _ in EVERY_KIND])
def test_no_identifier_pseudonym_device_source_or_offset_survives(
    resource: dict[str, Any],
) -> None:
    out, _ = deidentify(resource)
    text = orjson.dumps(out).decode()
    for canary in CANARIES:
        assert canary not in text
    assert not {"identifier", "device", "text", "note"} & set(out)
    assert out["meta"] == {
        "security": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "PSEUDED",
                "display": "pseudonymized",
            }
        ]
    }


@pytest.mark.parametrize("resource", [r for _, r in EVERY_KIND], ids=[i for i, _ in EVERY_KIND])
def test_every_timestamp_is_shifted_and_rendered_in_utc(resource: dict[str, Any]) -> None:
    out, _ = deidentify(resource)
    before, after = timestamps(resource), timestamps(out)
    assert len(before) == len(after) >= 2
    for original, shifted in zip(before, after, strict=True):
        assert shifted.endswith("Z")
        moved = parse_instant(original).replace(microsecond=0) + SHIFT
        assert parse_instant(shifted) == moved


def test_the_subject_and_id_are_the_study_pseudonym_and_the_study_resource_id() -> None:
    out, _ = deidentify(heart_rate())
    assert out["subject"] == {"reference": f"Patient/{STUDY_SUBJECT}"}
    assert out["id"] == study_id_of(OBSERVATION_ID)
    assert out["id"].startswith("e1-")


def test_re_running_gives_the_same_resource() -> None:
    assert deidentify(heart_rate()) == deidentify(heart_rate())


def test_the_stored_resource_is_not_modified() -> None:
    resource = heart_rate()
    original = copy.deepcopy(resource)
    deidentify(resource)
    assert resource == original


def test_what_the_gateway_stores_beside_the_measurement_is_dropped_and_counted() -> None:
    _, report = deidentify(stored(reading_of(HEART_RATE, record_version=2)))
    assert dict(report.dropped_elements) == {
        "code.text": 1,
        "device": 1,
        "identifier": 1,
        "meta.lastUpdated": 1,
        "meta.profile": 1,
        "meta.source": 1,
        "meta.versionId": 1,
    }
    assert not report.unknown_extensions


def test_unknown_elements_and_extensions_are_dropped_and_counted_by_name_and_url() -> None:
    resource = heart_rate() | {
        "note": [{"text": "patient said she lives at 12 Canary Road"}],
        "bodySite": {"text": "left wrist"},
        "performer": [{"reference": "Practitioner/1"}],
        "extension": [
            {"url": "https://vendor.example/ext/gps", "valueString": "19.2,110.3"},
            {"url": "https://vendor.example/ext/gps", "valueString": "19.3,110.4"},
            {"url": "https://vendor.example/ext/firmware", "valueString": "v1"},
            {"url": OFFSET_ASSUMED_URL, "valueBoolean": True},
        ],
    }
    resource["valueQuantity"] |= {"extension": [{"url": "https://x.example/q", "valueString": "y"}]}
    resource["code"]["coding"][0]["userSelected"] = True
    out, report = deidentify(resource)
    text = orjson.dumps(out).decode()
    for removed in ("Canary", "wrist", "110.3", "firmware"):
        assert removed not in text
    assert not {"note", "bodySite", "performer", "extension"} & set(out)
    assert report.dropped_elements["note"] == 1
    assert report.dropped_elements["bodySite"] == 1
    assert report.dropped_elements["performer"] == 1
    assert report.dropped_elements["code.coding.userSelected"] == 1
    assert dict(report.unknown_extensions) == {
        "https://vendor.example/ext/gps": 2,
        "https://vendor.example/ext/firmware": 1,
        "https://x.example/q": 1,
    }
    assert dict(report.dropped_extensions) == {OFFSET_ASSUMED_URL: 1}
    Observation.model_validate(out)


def test_an_aggregate_keeps_its_statistic() -> None:
    aggregate = stored(
        reading_of(HEART_RATE, end=datetime(2026, 12, 1, tzinfo=UTC), statistic="20th percentile")
    )
    out, _ = deidentify(aggregate)
    assert out["extension"] == [{"url": STATISTIC_URL, "valueCode": "20th percentile"}]


def test_reports_add_up() -> None:
    _, one = deidentify(heart_rate())
    total = one + one + DeidReport()
    assert total.dropped_elements["identifier"] == 2
    assert total.as_json()["droppedElements"]["meta.source"] == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r | {"resourceType": "Patient"}, ExclusionReason.NOT_AN_OBSERVATION),
        (
            lambda r: (
                r | {"modifierExtension": [{"url": "https://x.example/m", "valueBoolean": True}]}
            ),
            ExclusionReason.MODIFIER_EXTENSION,
        ),
        (
            lambda r: r | {"extension": [{"url": STATISTIC_URL, "valueCode": "mode"}]},
            ExclusionReason.UNKNOWN_STATISTIC,
        ),
        (lambda r: r | {"effectiveDateTime": "2026-11-30"}, ExclusionReason.TIME_NOT_SHIFTABLE),
        (lambda r: r | {"effectiveDateTime": "2026-11"}, ExclusionReason.TIME_NOT_SHIFTABLE),
        (
            lambda r: r | {"effectiveDateTime": "2026-11-30T08:00:00"},
            ExclusionReason.TIME_NOT_SHIFTABLE,
        ),
        (
            lambda r: {k: v for k, v in r.items() if k != "effectiveDateTime"},
            ExclusionReason.NO_EFFECTIVE_TIME,
        ),
        (lambda r: {k: v for k, v in r.items() if k != "id"}, ExclusionReason.NO_ID),
    ],
)
def test_a_resource_that_cannot_be_released_safely_is_left_out(
    change: Any, reason: ExclusionReason
) -> None:
    with pytest.raises(ResourceExcluded) as excluded:
        deidentify(change(heart_rate()))
    assert excluded.value.reason is reason


def test_a_measure_the_study_was_not_approved_for_is_left_out() -> None:
    policy = DeidPolicy(date_shift_bound=timedelta(days=365), allowed_codes=frozenset({"85354-9"}))
    with pytest.raises(ResourceExcluded) as excluded:
        deidentify(heart_rate(), policy=policy)
    assert excluded.value.reason is ExclusionReason.MEASURE_NOT_IN_STUDY


def test_glucose_of_unstated_specimen_has_no_loinc_code_a_study_could_approve() -> None:
    # POLICY allows every measure's first code, "glucose" included: only LOINC codes count.
    with pytest.raises(ResourceExcluded) as excluded:
        deidentify(stored(reading_of(MEASURES["glucose"])))
    assert excluded.value.reason is ExclusionReason.MEASURE_NOT_IN_STUDY


def test_an_issued_time_that_cannot_be_shifted_is_dropped_not_kept() -> None:
    out, report = deidentify(heart_rate() | {"issued": "2026-11-30"})
    assert "issued" not in out
    assert report.dropped_elements["issued"] == 1


@pytest.mark.parametrize(
    "shift",
    [timedelta(0), timedelta(days=366), timedelta(hours=5), timedelta(days=1, seconds=1)],
)
def test_an_offset_the_policy_could_not_have_made_is_refused(shift: timedelta) -> None:
    with pytest.raises(ValueError, match="policy"):
        deidentify(heart_rate(), shift=shift)


def test_the_zone_pseudonym_is_refused_as_the_study_subject() -> None:
    with pytest.raises(ValueError, match="study pseudonym"):
        deidentify_observation(
            heart_rate(),
            study_subject=ZONE_SUBJECT,
            shift=SHIFT,
            policy=POLICY,
            resource_id=study_id_of,
        )


# --- time: intervals, resolution, weekdays --------------------------------------------------

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2040, 1, 1),  # noqa: DTZ001
    timezones=offsets,
).map(lambda d: d.replace(microsecond=0))
zone_subjects = st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=32, max_size=32).map(
    lambda t: f"s1-{t}"
)


def period_reading(start: datetime, end: datetime) -> dict[str, Any]:
    return stored(reading_of(MEASURES["step-count"], start=start, end=end))


@given(
    subject=zone_subjects,
    first=moments,
    second=moments,
    gap=st.integers(min_value=1, max_value=10**7),
)
def test_intervals_between_a_subjects_readings_are_kept_exactly(
    subject: str, first: datetime, second: datetime, gap: int
) -> None:
    shift = date_shift(RING, STUDY, subject, bound=POLICY.date_shift_bound, keep_weekday=False)
    end = first + timedelta(seconds=gap)
    one, _ = deidentify(period_reading(first, end), shift=shift)
    two, _ = deidentify(stored(reading_of(HEART_RATE, start=second)), shift=shift)
    start_one = parse_instant(one["effectivePeriod"]["start"])
    end_one = parse_instant(one["effectivePeriod"]["end"])
    start_two = parse_instant(two["effectiveDateTime"])
    assert end_one - start_one == end - first
    assert start_two - start_one == second - first
    assert start_one - first == shift


@given(subject=zone_subjects, moment=moments, resolution=st.sampled_from(TimestampResolution))
def test_times_are_cut_to_the_study_resolution_in_utc(
    subject: str, moment: datetime, resolution: TimestampResolution
) -> None:
    policy = DeidPolicy(
        date_shift_bound=timedelta(days=30),
        allowed_codes=POLICY.allowed_codes,
        timestamp_resolution=resolution,
    )
    shift = date_shift(RING, STUDY, subject, bound=policy.date_shift_bound, keep_weekday=False)
    out, _ = deidentify(stored(reading_of(HEART_RATE, start=moment)), shift=shift, policy=policy)
    text = out["effectiveDateTime"]
    assert text.endswith("Z")
    shifted = parse_instant(text)
    expected = moment.astimezone(UTC) + shift
    kept = {
        TimestampResolution.SECOND: expected,
        TimestampResolution.MINUTE: expected.replace(second=0),
        TimestampResolution.HOUR: expected.replace(minute=0, second=0),
        TimestampResolution.DAY: expected.replace(hour=0, minute=0, second=0),
    }
    assert shifted == kept[resolution]


@given(subject=zone_subjects, moment=moments)
def test_weekdays_are_kept_when_the_study_asks(subject: str, moment: datetime) -> None:
    policy = DeidPolicy(
        date_shift_bound=timedelta(days=364), allowed_codes=POLICY.allowed_codes, keep_weekday=True
    )
    shift = date_shift(RING, STUDY, subject, bound=policy.date_shift_bound, keep_weekday=True)
    out, _ = deidentify(stored(reading_of(HEART_RATE, start=moment)), shift=shift, policy=policy)
    shifted = parse_instant(out["effectiveDateTime"])
    assert shifted.weekday() == moment.astimezone(UTC).weekday()
    assert shifted.date() != moment.astimezone(UTC).date()


def test_with_devices_in_the_extract_the_device_becomes_the_study_device_id() -> None:
    resource = heart_rate()
    seen: list[str] = []

    def device_id(stored_device: str) -> str:
        seen.append(stored_device)
        return study_id_of(stored_device)

    out, report = deidentify(resource, device_id=device_id)
    assert seen == [resource["device"]["reference"].removeprefix("Device/")]
    assert out["device"] == {"reference": f"Device/{study_id_of(seen[0])}"}
    assert "device" not in report.dropped_elements
    Observation.model_validate(out)


@pytest.mark.parametrize("reference", ["Device/SN-0001", "Patient/x", None, "Device/o1-abc"])
def test_a_device_reference_that_is_not_a_device_pseudonym_is_dropped(reference: Any) -> None:
    resource = heart_rate()
    resource["device"] = {"reference": reference, "display": "CANARY-DISPLAY"}
    out, report = deidentify(
        resource, device_id=lambda _: pytest.fail("a non-device reference was mapped")
    )
    assert "device" not in out
    assert report.dropped_elements["device"] == 1
    assert report.dropped_elements["device.display"] == 1
