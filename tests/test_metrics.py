"""`/metrics` shows every database operation by its static name (issue 12): duration per
(zone, name), failures per (zone, name), and nothing else in those labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.metrics import GatewayMetrics
from gateway.storage import TRANSACTION_NAMES
from tests.conftest import Gateway
from tests.helpers import reading
from tests.smart_helpers import client_token

DURATION = "gateway_db_transaction_duration_seconds"
FAILED = "gateway_db_transactions_failed"


async def samples(gateway: Gateway, family: str) -> list[Sample]:
    response = await gateway.client.get("/metrics")
    assert response.status == 200
    for metrics in text_string_to_metric_families(await response.text()):
        if metrics.name == family:
            return list(metrics.samples)
    return []


def counts(found: list[Sample], suffix: str) -> dict[tuple[str, str], float]:
    return {(s.labels["zone"], s.labels["name"]): s.value for s in found if s.name.endswith(suffix)}


async def test_an_ingest_and_a_search_show_their_operations_by_name_only(
    gateway: Gateway,
) -> None:
    pseudonym = await gateway.enrol("cn", "MRN-METRICS-1")
    now = datetime.now(UTC).replace(microsecond=0)
    status, body = await gateway.ingest(
        "cn",
        [reading("MRN-METRICS-1", value=61 + n, time=now - timedelta(minutes=n)) for n in range(3)],
    )
    assert status == 200, body
    token = await client_token(gateway, zone="cn")
    response = await gateway.client.get(
        "/fhir/Observation", params={"patient": pseudonym}, headers=gateway.auth(token)
    )
    assert response.status == 200

    found = await samples(gateway, DURATION)
    durations = counts(found, "_count")
    # The enrolment, the batch the writer stored, and the search, each under its own name.
    for name in (
        "subjects.insert",
        "observations.insert_unversioned",
        "fhir_search.search_observations",
    ):
        assert durations.get(("cn", name), 0) >= 1, name
    # Label values are only zones and names from the closed set: no id, no value, no SQL.
    for sample in found:
        assert set(sample.labels) - {"le"} == {"zone", "name"}
        assert sample.labels["zone"] in {"cn", "eu"}
        assert sample.labels["name"] in TRANSACTION_NAMES
    text = await (await gateway.client.get("/metrics")).text()
    assert pseudonym not in text
    assert "MRN-METRICS-1" not in text


async def test_an_operation_that_fails_is_counted_as_failed_by_name(gateway: Gateway) -> None:
    await gateway.enrol("cn", "MRN-METRICS-2")
    failed_before = counts(await samples(gateway, FAILED), "_total")
    assert failed_before.get(("cn", "subjects.insert"), 0) == 0

    # The same identifier again: the insert's transaction fails on the unique index (409).
    response = await gateway.client.post(
        "/v1/subjects",
        json={
            "zone": "cn",
            "site": "hainan-general",
            "identifiers": [{"system": "urn:oid:1.2.156.999.1", "value": "MRN-METRICS-2"}],
            "birth_date": "1970-01-02",
            "sex": "female",
            "consent": {"research": True, "cross_border": False},
        },
        headers=gateway.auth(gateway.clinic["cn"]),
    )
    assert response.status == 409

    failed = counts(await samples(gateway, FAILED), "_total")
    assert failed[("cn", "subjects.insert")] == 1
    durations = counts(await samples(gateway, DURATION), "_count")
    assert durations[("cn", "subjects.insert")] == 2  # the failed one is timed too


def test_the_label_children_are_reused_per_zone_and_name() -> None:
    metrics = GatewayMetrics()
    metrics.transaction_ended("cn", "subjects.get", 0.002, "ok")
    metrics.transaction_ended("cn", "subjects.get", 0.004, "error")
    metrics.transaction_ended("eu", "subjects.get", 0.001, "ok")
    registry = metrics.registry
    labels = {"zone": "cn", "name": "subjects.get"}
    assert registry.get_sample_value(f"{DURATION}_count", labels) == 2
    assert registry.get_sample_value(f"{DURATION}_sum", labels) == pytest.approx(0.006)
    assert registry.get_sample_value(f"{FAILED}_total", labels) == 1
    assert (
        registry.get_sample_value(f"{FAILED}_total", {"zone": "eu", "name": "subjects.get"}) is None
    )
