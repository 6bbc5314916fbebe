"""The read API driven by an off-the-shelf FHIR client (fhirpy, test extra): token, search, walk
every page through the server's `next` links, read included resources."""

from __future__ import annotations

from datetime import timedelta

from fhirpy import AsyncFHIRClient

from gateway.web.appkeys import SETTINGS
from tests.conftest import Gateway
from tests.helpers import reading
from tests.smart_helpers import client_token
from tests.web.fhir.test_fhir_observation import T0


async def test_fhirpy_searches_pages_and_reads_includes(gateway: Gateway) -> None:
    subject = await gateway.enrol("cn", "MRN-PY")
    status, body = await gateway.ingest(
        "cn", [reading("MRN-PY", time=T0 + timedelta(hours=n), value=60 + n) for n in range(23)]
    )
    assert status == 200
    stored = {r["id"] for r in body["results"]}
    token = await client_token(gateway)
    public = gateway.client.app[SETTINGS].base_url + "/fhir"
    client = AsyncFHIRClient(
        str(gateway.client.make_url("/fhir")),
        authorization=f"Bearer {token}",
        # The links carry the public base URL; the test server listens elsewhere.
        url_aliases=[public],
    )

    observations = (
        await client.resources("Observation")
        .search(patient=subject, code="http://loinc.org|8867-4")
        .sort("date")
        .limit(5)
        .fetch_all()
    )
    assert len(observations) == 23
    assert {o["id"] for o in observations} == stored
    assert [o["valueQuantity"]["value"] for o in observations] == list(range(60, 83))

    first = await client.resources("Observation").search(patient=subject).limit(3).first()
    assert first is not None
    assert first["subject"]["reference"] == f"Patient/{subject}"

    raw = await (
        client.resources("Observation")
        .search(patient=subject)
        .include("Observation", "patient")
        .limit(2)
        .fetch_raw()
    )
    included = [e["resource"] for e in raw["entry"] if e["search"]["mode"] == "include"]
    assert [r["resourceType"] for r in included] == ["Patient"]
    patient = await client.reference("Patient", subject).to_resource()
    assert patient["id"] == subject
    assert await client.resources("Observation").search(patient=subject).count() == 23
