"""SMART Backend Services: clients authenticate with RS384/ES384-signed JWT assertions at
POST /auth/token and get short-lived opaque access tokens; every malformed, forged, stale or
replayed assertion is refused with RFC 6749 `invalid_client`."""

from __future__ import annotations

import base64
import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.errors import BadRequest, Unauthenticated, ZoneNotServed
from gateway.logs import JSONFormatter
from gateway.services.smart import (
    JWT_BEARER,
    Permission,
    authenticate_access_token,
    issue_token,
    register_client,
    revoke_client,
)
from gateway.settings import Settings
from gateway.web.appkeys import ZONES
from tests.conftest import SITE, Gateway, start_gateway
from tests.helpers import dump_database

KeyPair = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def public_jwk(key: KeyPair, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid}


@dataclass
class Client:
    client_id: str
    key: KeyPair
    kid: str
    alg: str
    audience: str

    def assertion(
        self,
        *,
        now: datetime | None = None,
        lifetime: float = 240,
        headers: dict[str, Any] | None = None,
        key: KeyPair | None = None,
        **claims: Any,
    ) -> str:
        moment = now or datetime.now(UTC)
        body = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            "exp": int(moment.timestamp() + lifetime),
            "iat": int(moment.timestamp()),
            "jti": uuid.uuid4().hex,
            **claims,
        }
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(
            body,
            key or self.key,
            algorithm=self.alg,
            headers={"kid": self.kid, "typ": "JWT", **(headers or {})},
        )


def form(assertion: str, scope: str = "system/Observation.rs", **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        "scope": scope,
        **extra,
    }


async def token_endpoint(gateway: Gateway) -> str:
    response = await gateway.client.get("/.well-known/smart-configuration")
    return str((await response.json())["token_endpoint"])


async def register(
    gateway: Gateway,
    key: KeyPair,
    *,
    zone: str = "cn",
    role: str = "clinic",
    scopes: tuple[str, ...] = ("system/Observation.rs", "system/Patient.rs"),
) -> Client:
    kid = f"kid-{uuid.uuid4().hex[:8]}"
    client_id = await register_client(
        gateway.client.app[ZONES],
        zone=zone,
        site=SITE[zone],
        role=role,
        jwks={"keys": [public_jwk(key, kid)]},
        scopes=scopes,
    )
    alg = "RS384" if isinstance(key, rsa.RSAPrivateKey) else "ES384"
    return Client(client_id, key, kid, alg, await token_endpoint(gateway))


async def post_token(gateway: Gateway, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = await gateway.client.post("/auth/token", data=data)
    assert response.headers["Cache-Control"] == "no-store"
    return response.status, await response.json()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(client: Client, alg: str, secret: bytes | None) -> str:
    """An assertion with a hand-made header: `alg: none`, or an HMAC keyed with `secret`."""
    header = _b64(orjson.dumps({"alg": alg, "kid": client.kid, "typ": "JWT"}))
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": client.audience,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    }
    signing_input = f"{header}.{_b64(orjson.dumps(claims))}"
    signature = (
        b"" if secret is None else hmac.new(secret, signing_input.encode(), "sha256").digest()
    )
    return f"{signing_input}.{_b64(signature)}"


# --------------------------------------------------------------------------------- success


@pytest.mark.parametrize("kind", ["rsa", "ec"])
async def test_a_signed_assertion_gets_a_short_lived_bearer_token_for_its_scopes(
    gateway: Gateway, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, kind: str
) -> None:
    client = await register(gateway, rsa_key if kind == "rsa" else ec_key)
    status, body = await post_token(
        gateway, form(client.assertion(), "system/Observation.rs system/Patient.read")
    )
    assert status == 200, body
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Observation.rs system/Patient.read"
    assert body["access_token"].startswith("wgt_cn_")

    principal = await authenticate_access_token(
        gateway.client.app[ZONES], f"Bearer {body['access_token']}"
    )
    assert (principal.zone, principal.client_id, principal.site, principal.role) == (
        "cn",
        client.client_id,
        SITE["cn"],
        "clinic",
    )
    assert principal.permissions == {Permission.READ_OBSERVATION, Permission.READ_PATIENT}


# -------------------------------------------------------------------------------- refusals


def _public_pem(client: Client) -> bytes:
    return client.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# case -> (how the assertion is built, what the refusal must say)
REFUSED: dict[str, tuple[Callable[[Client], str], str]] = {
    "alg none": (lambda c: unsigned(c, "none", None), "alg must be"),
    "HS256 keyed with the public key": (
        lambda c: unsigned(c, "HS256", _public_pem(c)),
        "alg must be",
    ),
    "HS384 keyed with the public key": (
        lambda c: unsigned(c, "HS384", _public_pem(c)),
        "alg must be",
    ),
    "unknown kid": (lambda c: c.assertion(headers={"kid": "not-registered"}), "kid"),
    "typ other than JWT": (lambda c: c.assertion(headers={"typ": "at+jwt"}), "typ"),
    "wrong aud": (lambda c: c.assertion(aud="https://elsewhere.example/auth/token"), "aud"),
    "aud of the FHIR base": (
        lambda c: c.assertion(aud=c.audience.removesuffix("/auth/token")),
        "aud",
    ),
    "expired": (lambda c: c.assertion(now=datetime.now(UTC) - timedelta(seconds=300)), "expired"),
    "exp more than 300 s ahead": (lambda c: c.assertion(lifetime=301 + 5), "300 seconds"),
    "missing exp": (lambda c: c.assertion(exp=None), "exp is required"),
    "exp not a number": (lambda c: c.assertion(exp="tomorrow"), "NumericDate"),
    "iat in the future": (
        lambda c: c.assertion(iat=int(datetime.now(UTC).timestamp()) + 120),
        "iat",
    ),
    "missing jti": (lambda c: c.assertion(jti=None), "jti"),
    "sub not the client": (lambda c: c.assertion(sub="someone-else"), "sub"),
    "not a JWT": (lambda c: "not.a.jwt", "well-formed"),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_an_assertion_that_fails_any_check_is_invalid_client(
    gateway: Gateway, rsa_key: rsa.RSAPrivateKey, case: str
) -> None:
    client = await register(gateway, rsa_key)
    build, reason = REFUSED[case]
    status, body = await post_token(gateway, form(build(client)))
    assert (status, body["error"]) == (401, "invalid_client"), body
    assert reason in body["error_description"]


async def test_a_signature_by_another_key_is_refused(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, ec_key)
    impostor = ec.generate_private_key(ec.SECP384R1())
    status, body = await post_token(gateway, form(client.assertion(key=impostor)))
    assert (status, body["error"]) == (401, "invalid_client")
    assert "signature" in body["error_description"]


async def test_an_es384_header_on_an_rsa_key_is_refused_before_verifying(
    gateway: Gateway, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, rsa_key)
    # Signed with an EC key the client does not own, naming the client's RSA kid.
    forged = jwt.encode(
        {"iss": client.client_id, "sub": client.client_id, "aud": client.audience},
        ec_key,
        algorithm="ES384",
        headers={"kid": client.kid},
    )
    status, body = await post_token(gateway, form(forged))
    assert (status, body["error"]) == (401, "invalid_client")
    assert "RS384" in body["error_description"]


async def test_a_replayed_assertion_is_refused(
    gateway: Gateway, rsa_key: rsa.RSAPrivateKey
) -> None:
    client = await register(gateway, rsa_key)
    assertion = client.assertion()
    first, _ = await post_token(gateway, form(assertion))
    status, body = await post_token(gateway, form(assertion))
    assert first == 200
    assert (status, body["error"]) == (401, "invalid_client")
    assert "jti" in body["error_description"]
    # The same jti in a fresh assertion is a replay too, until the first one's exp.
    used = jwt.decode(assertion, options={"verify_signature": False})["jti"]
    jti_again = client.assertion(jti=used)
    status, _ = await post_token(gateway, form(jti_again))
    assert status == 401


async def test_a_jti_may_be_reused_once_its_first_assertion_has_expired(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, ec_key)
    zones = gateway.client.app[ZONES]
    start = datetime.now(UTC) - timedelta(minutes=10)
    first = client.assertion(now=start, lifetime=60, jti="fixed-jti")
    await issue_token(zones, form(first), client.audience, start)
    later = start + timedelta(seconds=120)
    again = client.assertion(now=later, lifetime=60, jti="fixed-jti")
    answer = await issue_token(zones, form(again), client.audience, later)
    assert answer.scope == "system/Observation.rs"


async def test_an_unknown_or_revoked_client_is_refused_and_revocation_ends_its_tokens(
    gateway: Gateway, rsa_key: rsa.RSAPrivateKey
) -> None:
    client = await register(gateway, rsa_key)
    status, body = await post_token(gateway, form(client.assertion()))
    assert status == 200
    token = body["access_token"]

    unknown = Client(f"wgc_cn_{'0' * 32}", rsa_key, client.kid, "RS384", client.audience)
    status, body = await post_token(gateway, form(unknown.assertion()))
    assert (status, body["error"]) == (401, "invalid_client")

    assert await revoke_client(gateway.client.app[ZONES], zone="cn", client_id=client.client_id)
    status, body = await post_token(gateway, form(client.assertion()))
    assert (status, body["error"]) == (401, "invalid_client")
    with pytest.raises(Unauthenticated):
        await authenticate_access_token(gateway.client.app[ZONES], f"Bearer {token}")


async def test_a_client_of_a_zone_not_served_is_invalid_client(
    gateway: Gateway, rsa_key: rsa.RSAPrivateKey
) -> None:
    client = await register(gateway, rsa_key)
    client.client_id = client.client_id.replace("wgc_cn_", "wgc_us_")
    status, body = await post_token(gateway, form(client.assertion()))
    assert (status, body["error"]) == (401, "invalid_client")
    assert "zone us" in body["error_description"]


# ----------------------------------------------------------------------------------- scopes


async def test_scopes_are_narrowed_to_those_registered(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, ec_key, scopes=("system/*.rs",))
    requested = "system/Observation.read system/Patient.c launch system/Device.rs patient/*.rs"
    status, body = await post_token(gateway, form(client.assertion(), requested))
    assert status == 200, body
    assert body["scope"] == "system/Observation.read system/Device.rs"
    principal = await authenticate_access_token(
        gateway.client.app[ZONES], f"Bearer {body['access_token']}"
    )
    assert principal.permissions == {Permission.READ_OBSERVATION, Permission.READ_DEVICE}


async def test_no_registered_scope_requested_is_invalid_scope(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, ec_key, scopes=("system/Observation.rs",))
    for requested in ("system/Patient.write", "system/Observation.r", ""):
        status, body = await post_token(gateway, form(client.assertion(), requested))
        assert (status, body["error"]) == (400, "invalid_scope"), requested


@pytest.mark.parametrize(
    "scope", ["system/Patient.write", "system/Patient.c", "system/Patient.cud"]
)
async def test_enrolment_scopes_in_v1_and_v2_grant_enrol(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey, scope: str
) -> None:
    client = await register(gateway, ec_key, scopes=("system/Patient.cruds",))
    status, body = await post_token(gateway, form(client.assertion(), scope))
    assert (status, body["scope"]) == (200, scope)
    principal = await authenticate_access_token(
        gateway.client.app[ZONES], f"Bearer {body['access_token']}"
    )
    assert principal.permissions == {Permission.ENROL}


# ------------------------------------------------------------------------ request shape


async def test_a_grant_type_other_than_client_credentials_is_unsupported(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, ec_key)
    status, body = await post_token(
        gateway, form(client.assertion(), grant_type="authorization_code")
    )
    assert (status, body["error"]) == (400, "unsupported_grant_type")


@pytest.mark.parametrize("missing", ["grant_type", "client_assertion_type", "client_assertion"])
async def test_a_missing_parameter_is_invalid_request(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey, missing: str
) -> None:
    client = await register(gateway, ec_key)
    data = form(client.assertion())
    del data[missing]
    status, body = await post_token(gateway, data)
    assert (status, body["error"]) == (400, "invalid_request")


async def test_a_json_body_or_a_repeated_parameter_is_invalid_request(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, ec_key)
    response = await gateway.client.post("/auth/token", json=form(client.assertion()))
    assert (response.status, (await response.json())["error"]) == (400, "invalid_request")
    twice = "&".join(f"{k}={v}" for k, v in form(client.assertion()).items()) + "&scope=x"
    response = await gateway.client.post(
        "/auth/token",
        data=twice,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (response.status, (await response.json())["error"]) == (400, "invalid_request")


# ------------------------------------------------------------------------- access tokens


async def test_an_access_token_expires_after_its_lifetime(
    aiohttp_client: Any, settings: Settings, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(token_lifetime_seconds=1))
    client = await register(gateway, ec_key)
    status, body = await post_token(gateway, form(client.assertion()))
    assert (status, body["expires_in"]) == (200, 1)
    zones = gateway.client.app[ZONES]
    header = f"Bearer {body['access_token']}"
    await authenticate_access_token(zones, header)
    with pytest.raises(Unauthenticated):
        await authenticate_access_token(zones, header, now=datetime.now(UTC) + timedelta(seconds=2))


async def test_unknown_malformed_and_other_zone_tokens_are_refused(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await register(gateway, ec_key)
    _, body = await post_token(gateway, form(client.assertion()))
    token = body["access_token"]
    zones = gateway.client.app[ZONES]
    for header in (
        None,
        token,  # no scheme
        f"Basic {token}",
        "Bearer wgt_cn_short",
        f"Bearer wgt_cn_{'A' * 43}",  # well-formed, never issued
        f"Bearer {token.replace('wgt_cn_', 'wgt_eu_')}",  # a cn token presented to eu
    ):
        with pytest.raises(Unauthenticated):
            await authenticate_access_token(zones, header)
    with pytest.raises(ZoneNotServed):
        await authenticate_access_token(zones, f"Bearer {token.replace('wgt_cn_', 'wgt_us_')}")


async def test_only_a_hash_of_the_access_token_is_stored(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey, zone_dsns: dict[str, str]
) -> None:
    client = await register(gateway, ec_key)
    assertion = client.assertion()
    _, body = await post_token(gateway, form(assertion))
    dump = await dump_database(zone_dsns["cn"])
    assert client.client_id in dump, "the dump holds no client: the scan would prove nothing"
    assert body["access_token"] not in dump
    assert body["access_token"].split("_", 2)[2] not in dump
    assert assertion.split(".")[2] not in dump


# ------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "path", ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"]
)
async def test_smart_configuration_describes_backend_services(gateway: Gateway, path: str) -> None:
    response = await gateway.client.get(path)
    assert response.status == 200
    config = await response.json()
    assert config["token_endpoint"] == "http://127.0.0.1:8080/auth/token"
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert config["grant_types_supported"] == ["client_credentials"]
    assert "client-confidential-asymmetric" in config["capabilities"]
    for scope in ("system/Observation.read", "system/Observation.rs", "system/Patient.c"):
        assert scope in config["scopes_supported"]


async def test_the_public_base_url_is_the_only_audience_accepted(
    aiohttp_client: Any, settings: Settings, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    public = "https://gateway.cn.example.org/api"
    gateway = await start_gateway(aiohttp_client, settings.with_overrides(public_base_url=public))
    client = await register(gateway, ec_key)
    assert client.audience == f"{public}/auth/token"
    status, _ = await post_token(gateway, form(client.assertion()))
    assert status == 200
    status, _ = await post_token(
        gateway, form(client.assertion(aud="http://127.0.0.1:8080/auth/token"))
    )
    assert status == 401


# -------------------------------------------------------------------------- registration


@pytest.mark.parametrize(
    ("case", "change"),
    [
        ("private key", lambda jwk: {**jwk, "d": "AAAA"}),
        ("no kid", lambda jwk: {k: v for k, v in jwk.items() if k != "kid"}),
        ("alg contradicts key", lambda jwk: {**jwk, "alg": "RS256"}),
        ("encryption key", lambda jwk: {**jwk, "use": "enc"}),
        ("P-256 curve", lambda jwk: {**jwk, "crv": "P-256"}),
    ],
)
async def test_registration_refuses_unusable_keys(
    gateway: Gateway,
    ec_key: ec.EllipticCurvePrivateKey,
    case: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    with pytest.raises(BadRequest):
        await register_client(
            gateway.client.app[ZONES],
            zone="cn",
            site=SITE["cn"],
            role="clinic",
            jwks={"keys": [change(public_jwk(ec_key, "k1"))]},
            scopes=["system/Observation.rs"],
        )


async def test_registration_refuses_short_rsa_keys_unknown_scopes_and_enrolling_researchers(
    gateway: Gateway, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    zones = gateway.client.app[ZONES]
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  (refused)
    cases = [
        ("clinic", public_jwk(short, "k1"), ["system/Observation.rs"]),
        ("clinic", public_jwk(ec_key, "k1"), ["patient/Observation.rs"]),
        ("clinic", public_jwk(ec_key, "k1"), ["system/Encounter.rs"]),
        ("researcher", public_jwk(ec_key, "k1"), ["system/Patient.c"]),
        ("auditor", public_jwk(ec_key, "k1"), ["system/Observation.rs"]),
    ]
    for role, jwk, scopes in cases:
        with pytest.raises(BadRequest):
            await register_client(
                zones, zone="cn", site=SITE["cn"], role=role, jwks={"keys": [jwk]}, scopes=scopes
            )


# ------------------------------------------------------------------------------- secrecy


async def test_assertions_and_tokens_never_reach_logs_or_metrics(
    gateway: Gateway, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await register(gateway, rsa_key)
    good = client.assertion()
    _, body = await post_token(gateway, form(good))
    refused = client.assertion(aud="https://elsewhere.example/auth/token")
    await post_token(gateway, form(refused))
    await post_token(gateway, form(good))  # a replay

    metrics = await (await gateway.client.get("/metrics")).text()
    logs = "\n".join(JSONFormatter().format(record) for record in caplog.records)
    assert "smart.token_issued" in logs, "nothing logged: the scan would prove nothing"
    assert "smart.token_refused" in logs
    for secret in (good, refused, body["access_token"]):
        for part in secret.split("."):
            assert part not in logs
            assert part not in metrics


async def test_token_requests_are_limited_per_client_counting_only_verified_assertions(
    aiohttp_client: Any, settings: Settings, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    gateway = await start_gateway(
        aiohttp_client, settings.with_overrides(rate_limit_per_second=0.01, rate_limit_burst=1)
    )
    client = await register(gateway, ec_key)
    impostor = ec.generate_private_key(ec.SECP384R1())
    # Assertions naming the client but signed by another key never reach its bucket...
    for _ in range(3):
        status, body = await post_token(gateway, form(client.assertion(key=impostor)))
        assert (status, body["error"]) == (401, "invalid_client")
    # ... so the client still has its one request, and then it waits.
    status, _ = await post_token(gateway, form(client.assertion()))
    assert status == 200
    refused = await gateway.client.post("/auth/token", data=form(client.assertion()))
    assert refused.status == 429
    assert refused.headers["Cache-Control"] == "no-store"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["error"]["code"] == "rate-limited"
    # Another client of the zone has its own bucket.
    other = await register(gateway, ec.generate_private_key(ec.SECP384R1()))
    status, _ = await post_token(gateway, form(other.assertion()))
    assert status == 200
