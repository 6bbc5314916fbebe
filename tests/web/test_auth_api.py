"""API keys: one zone each, vendor or clinic, revocable; failures say nothing of the key."""

from __future__ import annotations

import pytest

from gateway.services.credentials import revoke_credential
from gateway.web.appkeys import ZONES
from tests.conftest import Gateway
from tests.helpers import reading


async def _post(gateway: Gateway, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    response = await gateway.client.post(
        "/v1/ingest/native", json={"readings": [reading("MRN-1")]}, headers=headers
    )
    return response.status, await response.json()


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic dXNlcjpwYXNz", "Bearer ", "Bearer not-a-key", "Bearer wgk_cn_0123456789ab_"],
)
async def test_a_missing_or_malformed_key_is_401(
    gateway: Gateway, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    status, body = await _post(gateway, headers)
    assert status == 401
    assert body["error"]["code"] == "unauthenticated"  # type: ignore[index]


async def test_a_wrong_secret_is_401_and_not_echoed(gateway: Gateway) -> None:
    token = gateway.vendor["cn"]
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    status, body = await _post(gateway, gateway.auth(forged))
    assert status == 401
    assert forged not in str(body)


async def test_a_revoked_key_is_401(gateway: Gateway) -> None:
    key_id = gateway.vendor["cn"].split("_")[2]
    assert await revoke_credential(gateway.client.app[ZONES], zone="cn", key_id=key_id)
    status, _ = await _post(gateway, gateway.auth(gateway.vendor["cn"]))
    assert status == 401


async def test_a_clinic_key_cannot_post_readings_and_a_vendor_key_cannot_enrol(
    gateway: Gateway,
) -> None:
    status, _ = await _post(gateway, gateway.auth(gateway.clinic["cn"]))
    assert status == 403
    response = await gateway.client.post(
        "/v1/subjects",
        json={
            "zone": "cn",
            "site": "hainan-general",
            "identifiers": [{"system": "s", "value": "v"}],
        },
        headers=gateway.auth(gateway.vendor["cn"]),
    )
    assert response.status == 403


async def test_a_key_of_a_zone_this_gateway_does_not_serve_is_421(gateway: Gateway) -> None:
    token = gateway.vendor["cn"].replace("wgk_cn_", "wgk_us_", 1)
    status, body = await _post(gateway, gateway.auth(token))
    assert status == 421
    assert body["error"]["code"] == "zone-not-served"  # type: ignore[index]


async def test_a_key_of_one_zone_does_not_open_the_other(gateway: Gateway) -> None:
    token = gateway.vendor["cn"].replace("wgk_cn_", "wgk_eu_", 1)
    status, _ = await _post(gateway, gateway.auth(token))
    assert status == 401
