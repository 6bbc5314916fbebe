"""Who sees what through /fhir: a clinic sees only the subjects its own site enrolled,
only in its zone; anything else looks exactly like a resource that does not exist. Patient and
Device are pseudonymous. Every read and search is audited with parameter names, never values."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.services.credentials import add_credential
from gateway.web.appkeys import ZONES
from tests.conftest import MRN, SITE, Gateway
from tests.helpers import fetch, reading
from tests.smart_helpers import client_token
from tests.web.fhir.conftest import Fhir, ids

OTHER_SITE = "other-clinic"


async def enrol_at(gateway: Gateway, site: str, value: str) -> str:
    key = await add_credential(gateway.client.app[ZONES], zone="cn", kind="clinic", owner=site)
    response = await gateway.client.post(
        "/v1/subjects",
        json={
            "zone": "cn",
            "site": site,
            "identifiers": [{"system": MRN["cn"], "value": value}],
            "birth_date": "1980-02-03",
            "sex": "male",
        },
        headers=gateway.auth(key.token),
    )
    assert response.status == 201, await response.text()
    return str((await response.json())["pseudonym"])


@pytest.fixture
async def two_clinics(gateway: Gateway) -> dict[str, Any]:
    """Clinic A (the cn test site) and clinic B (another cn site), one subject each with a
    reading, and an eu subject with a reading."""
    mine = await gateway.enrol(
        "cn", "MRN-A", extra=[{"system": "urn:example:wearable-account", "value": "acct-7"}]
    )
    theirs = await enrol_at(gateway, OTHER_SITE, "MRN-B")
    eu_subject = await gateway.enrol("eu", "MRN-EU")
    _, a = await gateway.ingest("cn", [reading("MRN-A")])
    _, b = await gateway.ingest("cn", [reading("MRN-B", device="SN-B")])
    _, e = await gateway.ingest("eu", [reading("MRN-EU", system=MRN["eu"])])
    return {
        "mine": mine,
        "theirs": theirs,
        "eu": eu_subject,
        "mine_obs": a["results"][0]["id"],
        "theirs_obs": b["results"][0]["id"],
        "eu_obs": e["results"][0]["id"],
    }


async def test_another_sites_subject_is_indistinguishable_from_a_missing_one(
    fhir: Fhir, two_clinics: dict[str, Any]
) -> None:
    missing_status, missing = await fhir.get(
        "/fhir/Observation/o1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )
    for path in (
        f"/fhir/Observation/{two_clinics['theirs_obs']}",
        f"/fhir/Patient/{two_clinics['theirs']}",
        f"/fhir/Observation/{two_clinics['theirs_obs']}/_history",
    ):
        status, body = await fhir.get(path)
        assert status == missing_status == 404
        assert body["issue"][0]["code"] == missing["issue"][0]["code"]
    assert ids(await fhir.search(patient=two_clinics["theirs"])) == []
    assert ids(await fhir.search()) == [two_clinics["mine_obs"]]
    assert (await fhir.search(_summary="count"))["total"] == 1
    assert ids(await fhir.search("Patient")) == [two_clinics["mine"]]
    assert len(ids(await fhir.search("Device"))) == 1


async def test_clinic_b_sees_only_its_own(gateway: Gateway, two_clinics: dict[str, Any]) -> None:
    other = Fhir(gateway, await client_token(gateway, site=OTHER_SITE))
    assert ids(await other.search()) == [two_clinics["theirs_obs"]]
    status, _ = await other.get(f"/fhir/Observation/{two_clinics['mine_obs']}")
    assert status == 404


async def test_zones_are_separate(gateway: Gateway, two_clinics: dict[str, Any]) -> None:
    eu = Fhir(gateway, await client_token(gateway, zone="eu"))
    assert ids(await eu.search()) == [two_clinics["eu_obs"]]
    status, _ = await eu.get(f"/fhir/Observation/{two_clinics['mine_obs']}")
    assert status == 404
    cn = Fhir(gateway, await client_token(gateway, zone="cn"))
    status, _ = await cn.get(f"/fhir/Observation/{two_clinics['eu_obs']}")
    assert status == 404


async def test_patient_is_pseudonymous_with_only_the_enrolled_identifiers(
    fhir: Fhir, two_clinics: dict[str, Any]
) -> None:
    status, patient = await fhir.get(f"/fhir/Patient/{two_clinics['mine']}")
    assert status == 200
    assert patient["id"] == two_clinics["mine"]
    assert {(i["system"], i["value"]) for i in patient["identifier"]} == {
        (MRN["cn"], "MRN-A"),
        ("urn:example:wearable-account", "acct-7"),
    }
    assert set(patient) == {"resourceType", "id", "meta", "identifier"}  # no birthDate, gender
    assert fhir.last_headers["ETag"] == 'W/"0"'


async def test_patient_search_by_identifier_and_id(fhir: Fhir, two_clinics: dict[str, Any]) -> None:
    mine = two_clinics["mine"]
    assert ids(await fhir.search("Patient", identifier=f"{MRN['cn']}|MRN-A")) == [mine]
    assert ids(await fhir.search("Patient", identifier="urn:example:wearable-account|acct-7")) == [
        mine
    ]
    # Another site's identifier finds nothing, exactly as an unknown one does.
    assert ids(await fhir.search("Patient", identifier=f"{MRN['cn']}|MRN-B")) == []
    assert ids(await fhir.search("Patient", identifier=f"{MRN['cn']}|MRN-Z")) == []
    assert ids(await fhir.search("Patient", _id=mine)) == [mine]
    assert ids(await fhir.search("Patient", _id=two_clinics["theirs"])) == []
    status, _ = await fhir.get("/fhir/Patient", params={"identifier": "MRN-A"})
    assert status == 400  # the blind index needs the system


async def test_device_read_and_search(fhir: Fhir, two_clinics: dict[str, Any]) -> None:
    (device_id,) = ids(await fhir.search("Device", patient=two_clinics["mine"]))
    status, device = await fhir.get(f"/fhir/Device/{device_id}")
    assert status == 200
    # The payload said "Acme" / "Watch 5", neither in gateway.devices' closed tables.
    assert device["manufacturer"] == "other"
    assert device["deviceName"][0]["name"] == "other"
    assert device["patient"]["reference"] == f"Patient/{two_clinics['mine']}"
    assert "SN-0001" not in orjson.dumps(device).decode()
    identifier = f"urn:wearable-gateway:device|{device_id}"
    assert ids(await fhir.search("Device", identifier=identifier)) == [device_id]
    assert ids(await fhir.search("Device", patient=two_clinics["theirs"])) == []


async def test_reads_and_searches_are_audited_with_parameter_names_only(
    fhir: Fhir, two_clinics: dict[str, Any], zone_dsns: dict[str, str]
) -> None:
    await fhir.search(patient=two_clinics["mine"], date="ge2020")
    await fhir.get(f"/fhir/Observation/{two_clinics['mine_obs']}")
    await fhir.get(f"/fhir/Observation/{two_clinics['theirs_obs']}")
    rows = await fetch(
        zone_dsns["cn"],
        "SELECT action, actor, subject, outcome, detail::text AS d FROM audit_events "
        "WHERE action IN ('read', 'search') ORDER BY seq",
    )
    events = [(r["action"], r["outcome"], orjson.loads(r["d"])) for r in rows]
    assert events[0] == (
        "search",
        "success",
        {"resource_type": "Observation", "count": 1, "parameters": ["date", "patient"]},
    )
    assert events[1][:2] == ("read", "success")
    assert events[2][:2] == ("read", "refused")
    assert rows[0]["actor"].startswith("wgc_cn_")
    assert rows[0]["subject"] == two_clinics["mine"]
    assert "ge2020" not in str(events)


async def test_site_of_the_token_not_the_request_decides(
    gateway: Gateway, two_clinics: dict[str, Any]
) -> None:
    assert SITE["cn"] != OTHER_SITE
    other = Fhir(gateway, await client_token(gateway, site=OTHER_SITE))
    assert ids(await other.search("Patient", _id=two_clinics["mine"])) == []
