"""SMART Backend Services clients for tests: register a client with a real key pair and get an
access token through POST /auth/token, as a clinic's backend would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.services.smart import JWT_BEARER, register_client
from gateway.web.appkeys import ZONES
from tests.conftest import SITE, Gateway

READ_ALL = ("system/Observation.rs", "system/Patient.rs", "system/Device.rs")


async def client_token(
    gateway: Gateway,
    *,
    zone: str = "cn",
    site: str | None = None,
    role: str = "clinic",
    scopes: tuple[str, ...] = READ_ALL,
) -> str:
    """A fresh access token of a newly registered client of `site` (the zone's test site)."""
    _, token = await registered_client(gateway, zone=zone, site=site, role=role, scopes=scopes)
    return token


async def registered_client(
    gateway: Gateway,
    *,
    zone: str = "cn",
    site: str | None = None,
    role: str = "clinic",
    scopes: tuple[str, ...] = READ_ALL,
) -> tuple[str, str]:
    """(client id, access token) of a newly registered client with an ES384 key."""
    key = ec.generate_private_key(ec.SECP384R1())
    kid = f"kid-{uuid.uuid4().hex[:8]}"
    jwk: dict[str, Any] = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}
    client_id = await register_client(
        gateway.client.app[ZONES],
        zone=zone,
        site=site or SITE[zone],
        role=role,
        jwks={"keys": [jwk]},
        scopes=scopes,
    )
    return client_id, await token_for(gateway, client_id, key, kid, scopes)


async def token_for(
    gateway: Gateway, client_id: str, key: Any, kid: str, scopes: tuple[str, ...]
) -> str:
    """An access token for a registered client, through a signed assertion to POST /auth/token."""
    discovery = await gateway.client.get("/.well-known/smart-configuration")
    token_url = str((await discovery.json())["token_endpoint"])
    now = int(datetime.now(UTC).timestamp())
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": now + 240,
            "iat": now,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithm="ES384",
        headers={"kid": kid, "typ": "JWT"},
    )
    response = await gateway.client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
            "scope": " ".join(scopes),
        },
    )
    assert response.status == 200, await response.text()
    return str((await response.json())["access_token"])
