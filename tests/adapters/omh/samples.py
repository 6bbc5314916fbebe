"""Open mHealth's published test data, wrapped in data-point headers, and what to expect of each.

The samples (tests/fixtures/omh/test-data/omh/<schema>/<version>/{shouldPass,shouldFail}) are bare
bodies; the gateway needs the header for the schema id and the user, so each is wrapped here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.adapters.omh import OMH_USER_SYSTEM

SAMPLES = Path(__file__).parents[2] / "fixtures" / "omh" / "test-data" / "omh"
USER_ID = "user1432"  # header-1.1 shouldPass/with-user-id.json
SUBJECT = {"system": OMH_USER_SYSTEM, "value": USER_ID}

# The ten mapped schemas at the versions of the test data.
MAPPED = (
    "blood-glucose/4.0", "blood-pressure/4.0", "body-height/2.0", "body-mass-index/3.0",
    "body-temperature/4.0", "body-weight/3.0", "heart-rate/2.0", "oxygen-saturation/2.0",
    "respiratory-rate/2.0", "step-count/3.0",
)  # fmt: skip

# shouldPass samples the gateway refuses, and why.
PASS_REJECTED: dict[str, str] = {
    # start 2023-02-05, end 2020-03-06: JSON Schema does not order interval ends; the gateway does.
    "body-temperature/4.0/valid-temperature-with-statistic.json": "invalid-interval",
    # "maximum"/"average" per day or per session is a per-denominator rate, not a count over the
    # interval; no gateway measure holds it.
    "step-count/3.0/with-average.json": "unsupported-type",
    "step-count/3.0/with-maximum.json": "unsupported-type",
    "step-count/3.0/with-session.json": "unsupported-type",
}

# Every shouldFail sample, with the code it is refused with (the first rule that fires).
FAIL_CODES: dict[str, str] = {
    "blood-glucose/4.0/empty-document.json": "invalid-reading",
    "blood-glucose/4.0/invalid-descriptive-statistic.json": "invalid-reading",
    "blood-glucose/4.0/invalid-specimen-source.json": "invalid-reading",  # "fluid": no such value
    "blood-glucose/4.0/invalid-temporal-relationship-to-meal.json": "invalid-reading",
    "blood-glucose/4.0/invalid-temporal-relationship-to-sleep.json": "invalid-reading",
    "blood-glucose/4.0/invalid-time-interval.json": "invalid-reading",
    "blood-glucose/4.0/missing-time-frame.json": "invalid-reading",
    "blood-pressure/4.0/empty-document.json": "invalid-reading",
    "blood-pressure/4.0/invalid-pa-value.json": "invalid-reading",
    "blood-pressure/4.0/invalid-timeframe-format.json": "invalid-reading",
    "blood-pressure/4.0/invalid-unit.json": "unit-not-convertible",
    "body-height/2.0/empty-document.json": "invalid-reading",
    "body-height/2.0/missing-time-frame.json": "invalid-reading",
    "body-height/2.0/with-part-of-day.json": "invalid-reading",
    "body-mass-index/3.0/empty-document.json": "invalid-reading",
    "body-mass-index/3.0/missing-time-frame.json": "invalid-reading",
    "body-temperature/4.0/empty-document.json": "invalid-reading",
    "body-temperature/4.0/invalid-unit.json": "unit-not-convertible",
    "body-temperature/4.0/missing-effective-time-frame.json": "invalid-reading",
    "body-weight/3.0/empty-document.json": "invalid-reading",
    "body-weight/3.0/invalid-descriptive-statistic.json": "invalid-reading",
    "body-weight/3.0/invalid-time-frame.json": "invalid-reading",
    "body-weight/3.0/invalid-time-interval.json": "invalid-reading",
    "body-weight/3.0/invalid-unit.json": "unit-not-convertible",
    "body-weight/3.0/missing-body-weight-unit.json": "invalid-reading",
    "body-weight/3.0/missing-body-weight-value.json": "invalid-reading",
    "heart-rate/2.0/empty-document.json": "invalid-reading",
    "heart-rate/2.0/incorrect-unit.json": "unit-not-convertible",
    "heart-rate/2.0/missing-effective-time-frame.json": "invalid-reading",
    "oxygen-saturation/2.0/invalid-oxygen-unit.json": "invalid-reading",
    "oxygen-saturation/2.0/invalid-unit.json": "unit-not-convertible",
    "oxygen-saturation/2.0/missing-effective-time-frame.json": "invalid-reading",
    "respiratory-rate/2.0/empty-document.json": "invalid-reading",
    "respiratory-rate/2.0/invalid-respiratory-rate.json": "unit-not-convertible",
    "step-count/3.0/empty-document.json": "invalid-reading",
    "step-count/3.0/invalid-unit-step-count.json": "invalid-reading",
    "step-count/3.0/step-count-only.json": "invalid-reading",
    "step-count/3.0/string-step-count-value.json": "invalid-reading",
    "step-count/3.0/with-date-time.json": "invalid-reading",
}


def sample_keys(kind: str) -> list[str]:
    """`<schema>/<version>/<file>` of every sample of the mapped schemas, kind "Pass" or "Fail"."""
    return sorted(
        f"{schema_version}/{path.name}"
        for schema_version in MAPPED
        for path in (SAMPLES / schema_version / f"should{kind}").glob("*.json")
    )


def sample_body(key: str, kind: str) -> Any:
    schema, version, name = key.split("/")
    return json.loads((SAMPLES / schema / version / f"should{kind}" / name).read_text())


def header(key: str, **overrides: Any) -> dict[str, Any]:
    """An Open mHealth 1.x header for the sample `key` (its schema id from the folder layout)."""
    schema, version, _ = key.split("/")
    return {
        "id": f"omh-sample-{key}",
        "creation_date_time": "2024-06-01T00:00:00Z",
        "schema_id": {"namespace": "omh", "name": schema, "version": version},
        # One device per sample: several samples share a time frame, and readings of one device,
        # subject, measure and time are duplicates by the gateway's dedup rule.
        "acquisition_provenance": {"source_name": f"device-{key}", "modality": "sensed"},
        "user_id": USER_ID,
        **overrides,
    }


def data_point(key: str, kind: str) -> dict[str, Any]:
    return {"header": header(key), "body": sample_body(key, kind)}
