"""The base URL the gateway advertises is the address it actually listens on: unchanged
third-party clients (fhirpy) get a token and walk every page against `demo --port 0`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fhirpy import AsyncFHIRClient
from jwt.algorithms import ECAlgorithm

from gateway.app import create_app
from gateway.demo import MRN_SYSTEM, SITES
from gateway.errors import ConfigurationError
from gateway.services.smart import JWT_BEARER
from gateway.settings import Settings
from gateway.web.server import listen
from tests.demo_process import Demo, running_demo

SCOPES = "system/Observation.rs system/Patient.rs system/Device.rs"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("demo") / "data") as running:
        yield running


def register_clinic_client(demo: Demo, folder: Path) -> tuple[str, Any, str]:
    """A SMART client of the demo's cn clinic, registered with the CLI as the README shows."""
    key = ec.generate_private_key(ec.SECP384R1())
    kid = "k1"
    jwks = folder / "clinic-public.jwks.json"
    public = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}
    jwks.write_text(json.dumps({"keys": [public]}), encoding="utf-8")
    done = subprocess.run(  # noqa: S603 — our own interpreter and module
        [sys.executable, "-m", "gateway", "clients", "add", "--zone", "cn", "--site",
         SITES["cn"], "--role", "clinic", "--jwks", str(jwks), "--scopes", SCOPES],
        env=demo.environment | {"PATH": "/usr/bin:/bin", "PYTHONPATH": sys.path[0]},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1], key, kid


async def test_fhirpy_gets_a_token_and_pages_against_the_demo_on_port_0(
    demo: Demo, tmp_path: Path
) -> None:
    assert not demo.base_url.endswith((":0", ":8080"))
    client_id, key, kid = register_clinic_client(demo, tmp_path)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{demo.base_url}/.well-known/smart-configuration") as response:
            token_url = (await response.json())["token_endpoint"]
        assert token_url == f"{demo.base_url}/auth/token"
        now = int(datetime.now(UTC).timestamp())
        claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
                  "iat": now, "jti": uuid.uuid4().hex}  # fmt: skip
        assertion = jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"})
        form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion, "scope": SCOPES}  # fmt: skip
        # To the URL the discovery named, as a SMART client library does.
        async with http.post(token_url, data=form) as response:
            assert response.status == 200, await response.text()
            token = (await response.json())["access_token"]

    # No url_aliases: every link the server sends must be reachable as sent.
    client = AsyncFHIRClient(f"{demo.base_url}/fhir", authorization=f"Bearer {token}")
    patients = await (
        client.resources("Patient").search(identifier=f"{MRN_SYSTEM['cn']}|CN-0001").fetch_all()
    )
    assert len(patients) == 1
    subject = patients[0]["id"]
    observations = (
        await client.resources("Observation")
        .search(patient=subject, code="http://loinc.org|8867-4")
        .limit(2)
        .fetch_all()
    )
    assert len(observations) == 6  # the demo's six heart rates of CN-0001, three pages
    raw = await client.resources("Observation").search(patient=subject).limit(1).fetch_raw()
    assert raw["entry"][0]["fullUrl"].startswith(f"{demo.base_url}/fhir/Observation/")
    assert all(link["url"].startswith(demo.base_url) for link in raw["link"])


def test_listen_decides_the_base_url_from_the_bound_socket(settings: Settings) -> None:
    sock, bound = listen(settings, host="127.0.0.1", port=0)
    try:
        port = sock.getsockname()[1]
        assert port != 0
        assert bound.base_url == f"http://127.0.0.1:{port}"
        explicit = settings.with_overrides(public_base_url="https://gw.example.org/")
        sock2, kept = listen(explicit, host="127.0.0.1", port=0)
        sock2.close()
        assert kept.base_url == "https://gw.example.org"  # an explicit public URL still wins
    finally:
        sock.close()
    with pytest.raises(ConfigurationError):
        create_app(settings.with_overrides(port=0))  # nobody may read a base URL of port 0
