"""`wearable-gateway clients keygen` and `wearable-gateway token`: a client makes its key pair,
the operator registers the public half, and the token the client gets opens the FHIR API of a
real `serve` process."""

from __future__ import annotations

import base64
import json
import re
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.privacy.client_keys import thumbprint
from gateway.privacy.tokens import load_client_jwks
from tests.cli.test_commands import run
from tests.conftest import SITE
from tests.faults.harness import GatewayProcess, free_port, gateway_environment, provision

SCOPES = "system/Observation.rs system/Patient.rs system/Device.rs"
TOKEN = re.compile(r"wgt_cn_[A-Za-z0-9_-]{20,}")


def test_the_kid_is_the_rfc_7638_thumbprint() -> None:
    # RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
        "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI"
        "4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",  # not part of the thumbprint (§3.2: required members only)
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_keygen_writes_a_0600_private_key_and_a_jwks_the_gateway_accepts(
    tmp_path: Path, alg: str
) -> None:
    done = run(["clients", "keygen", "--out", str(tmp_path / "clinic"), "--alg", alg], {})
    assert done.returncode == 0, done.stderr
    private, public = tmp_path / "clinic.pem", tmp_path / "clinic.jwks.json"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey if alg == "ES384" else rsa.RSAPrivateKey)

    jwks = json.loads(public.read_text(encoding="utf-8"))
    [jwk] = jwks["keys"]
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert jwk["kid"] == thumbprint(jwk)
    assert len(base64.urlsafe_b64decode(jwk["kid"] + "=")) == 32  # SHA-256
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)  # the public half only
    assert set(load_client_jwks(jwks).keys) == {jwk["kid"]}
    assert jwk["kid"] in done.stdout


def test_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    prefix = str(tmp_path / "clinic")
    assert run(["clients", "keygen", "--out", prefix], {}).returncode == 0
    before = (tmp_path / "clinic.pem").read_bytes(), (tmp_path / "clinic.jwks.json").read_bytes()
    (tmp_path / "other.jwks.json").write_text("{}")
    again = run(["clients", "keygen", "--out", prefix], {})
    assert again.returncode == 2
    assert "already exists" in again.stderr
    after = (tmp_path / "clinic.pem").read_bytes(), (tmp_path / "clinic.jwks.json").read_bytes()
    assert after == before
    # Either file existing is enough to refuse, and the other is then not written either.
    assert run(["clients", "keygen", "--out", str(tmp_path / "other")], {}).returncode == 2
    assert not (tmp_path / "other.pem").exists()


@asynccontextmanager
async def serving(zone_dsns: dict[str, str], tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """A `serve` process; yields the environment that points CLI commands at it (its databases,
    keys and, through GATEWAY_PORT, the base URL `token` discovers from by default)."""
    credentials = await provision(zone_dsns, tmp_path)
    env = gateway_environment(zone_dsns, credentials, free_port())
    async with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        await gateway.start()
        yield env


def register(env: dict[str, str], prefix: Path) -> str:
    assert run(["clients", "keygen", "--out", str(prefix)], env).returncode == 0
    added = run(
        ["clients", "add", "--zone", "cn", "--site", SITE["cn"], "--role", "clinic",
         "--jwks", f"{prefix}.jwks.json", "--scopes", SCOPES],
        env,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return added.stdout.splitlines()[-1]


async def test_a_token_from_the_cli_opens_the_fhir_api(
    zone_dsns: dict[str, str], tmp_path: Path
) -> None:
    async with serving(zone_dsns, tmp_path) as env:
        client_id = register(env, tmp_path / "clinic")
        done = run(["token", "--client-id", client_id, "--key", str(tmp_path / "clinic.pem"),
                    "--scope", SCOPES], env)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert TOKEN.fullmatch(done.stdout.removesuffix("\n"))  # the token alone, one line
        token = done.stdout.strip()
        base = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{base}/fhir/Observation", headers={"Authorization": f"Bearer {token}"}
            ) as response,
        ):
            assert response.status == 200, await response.text()
            assert (await response.json())["resourceType"] == "Bundle"


async def test_a_token_request_signed_with_another_key_fails_in_one_clear_line(
    zone_dsns: dict[str, str], tmp_path: Path
) -> None:
    async with serving(zone_dsns, tmp_path) as env:
        client_id = register(env, tmp_path / "clinic")
        assert run(["clients", "keygen", "--out", str(tmp_path / "stolen")], env).returncode == 0
        wrong_key = tmp_path / "stolen.pem"
        done = run(["token", "--client-id", client_id, "--key", str(wrong_key)], env)
        assert done.returncode == 2
        assert done.stdout == ""
        [line] = done.stderr.splitlines()
        assert line.startswith("wearable-gateway: token request refused: HTTP 401 invalid_client")
        # Neither key material nor a token is echoed.
        pem_body = "".join(wrong_key.read_text().splitlines()[1:-1])
        assert pem_body[:40] not in done.stderr
        assert not TOKEN.search(done.stderr)

        unreachable = run(
            ["token", "--client-id", client_id, "--key", str(tmp_path / "clinic.pem"),
             "--url", f"http://127.0.0.1:{free_port()}"],
            env,
        )  # fmt: skip
        assert unreachable.returncode == 2
        [line] = unreachable.stderr.splitlines()
        assert line.startswith("wearable-gateway: cannot reach http://127.0.0.1:")

        not_a_key = run(
            ["token", "--client-id", client_id, "--key", f"{tmp_path}/clinic.jwks.json"], env
        )
        assert not_a_key.returncode == 2
        assert "is not an unencrypted PEM private key" in not_a_key.stderr
        assert '"x"' not in not_a_key.stderr
