"""Enrolment with SMART Backend Services tokens: a clinic client whose scopes grant
enrolment enrols for its own site and zone; read-only, researcher and other-site tokens cannot."""

from __future__ import annotations

from typing import Any

from tests.conftest import MRN, SITE, Gateway
from tests.helpers import fetch
from tests.smart_helpers import client_token


def body(zone: str = "cn", site: str | None = None, value: str = "MRN-T1") -> dict[str, Any]:
    return {
        "zone": zone,
        "site": site or SITE[zone],
        "identifiers": [{"system": MRN[zone], "value": value}],
        "sex": "female",
    }


async def enrol_with(gateway: Gateway, token: str, payload: dict[str, Any]) -> tuple[int, Any]:
    response = await gateway.client.post(
        "/v1/subjects", json=payload, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json()


async def test_a_clinic_token_with_the_enrol_scope_enrols_and_is_audited(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    for scope in ("system/Patient.write", "system/Patient.c"):
        token = await client_token(gateway, scopes=(scope,))
        status, answer = await enrol_with(gateway, token, body(value=f"MRN-{scope[-1]}"))
        assert status == 201, answer
        assert answer["pseudonym"].startswith("s1-")
    actors = await fetch(zone_dsns["cn"], "SELECT actor FROM audit_events WHERE action = 'enrol'")
    assert all(row["actor"].startswith("wgc_cn_") for row in actors)
    assert len(actors) == 2


async def test_a_read_only_token_cannot_enrol(gateway: Gateway) -> None:
    token = await client_token(gateway, scopes=("system/Patient.rs",))
    status, answer = await enrol_with(gateway, token, body())
    assert status == 403
    assert answer["error"]["code"] == "forbidden"


async def test_a_researcher_token_cannot_enrol(gateway: Gateway) -> None:
    token = await client_token(gateway, role="researcher", scopes=("system/Observation.rs",))
    status, _ = await enrol_with(gateway, token, body())
    assert status == 403


async def test_a_token_enrols_only_for_its_own_site_and_zone(gateway: Gateway) -> None:
    token = await client_token(gateway, scopes=("system/Patient.c",))
    assert (await enrol_with(gateway, token, body(site="another-site")))[0] == 403
    assert (await enrol_with(gateway, token, body(zone="eu", site=SITE["eu"])))[0] == 403


async def test_an_unknown_or_forged_token_is_401(gateway: Gateway) -> None:
    forged = "wgt_cn_" + "A" * 43
    status, answer = await enrol_with(gateway, forged, body())
    assert status == 401
    assert forged not in str(answer)
