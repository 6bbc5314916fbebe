"""Issue 11, item 9: the README's key-rotation sequence run against a real `serve` process while
it enrols and reads. `keys rotate --no-rewrap`, `keys retire` (refused: keys still under the old
version), `keys rewrap`, `keys retire`; the CLI is a separate process each time, as in production.
No identity may be lost: every subject enrolled before, during and after reads back as a FHIR
Patient with its identifier, no request answers 500, and the zone starts again afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.app import load_keyrings, open_zones
from gateway.privacy import KeyPurpose
from gateway.privacy.provider import FileKeyProvider
from gateway.services.smart import JWT_BEARER, register_client
from gateway.settings import Settings, ZoneSettings
from tests.conftest import MRN, SITE, DatabaseFactory
from tests.faults.harness import (
    REQUEST_TIMEOUT,
    GatewayProcess,
    enrol,
    free_port,
    gateway_environment,
    provision,
    subject_value,
    wait_for,
)
from tests.helpers import fetch
from tests.smart_helpers import READ_ALL

BEFORE = 6  # subjects enrolled before the rotation
MAX_ENROLMENTS = 150  # bound on the enrolments made while the CLI runs
CLI_TIMEOUT = 120.0


async def smart_token(dsn: str, key_file: Path, base_url: str) -> str:
    """An access token for a clinic backend of the zone's test site, from the running process."""
    settings = Settings(zones={"cn": ZoneSettings("cn", dsn, key_file)}, pool_max_size=2)
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "rotation"}
    zones = await open_zones(settings, load_keyrings(settings))
    try:
        client_id = await register_client(
            zones, zone="cn", site=SITE["cn"], role="clinic", jwks={"keys": [jwk]}, scopes=READ_ALL
        )
    finally:
        for zone in zones.values():
            await zone.db.close()
    now = int(datetime.now(UTC).timestamp())
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": f"{base_url}/auth/token",
            "exp": now + 240,
            "iat": now,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithm="ES384",
        headers={"kid": "rotation", "typ": "JWT"},
    )
    async with (
        aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http,
        http.post(
            f"{base_url}/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": assertion,
                "scope": " ".join(READ_ALL),
            },
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return str((await response.json())["access_token"])


async def keys_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`wearable-gateway keys …` as its own process; (exit status, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "keys",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **env},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode()


class Traffic:
    """One client enrolling new subjects and one reading every enrolled subject's Patient, both
    until told to stop; every status they get is counted."""

    def __init__(self, base_url: str, clinic: str, token: str) -> None:
        self.base_url = base_url
        self.clinic = {"Authorization": f"Bearer {clinic}"}
        self.reader = {"Authorization": f"Bearer {token}"}
        self.enrolled: dict[str, str] = {}  # pseudonym -> identifier value
        self.enrol_statuses: Counter[int] = Counter()
        self.read_statuses: Counter[int] = Counter()
        self.failures: list[str] = []

    async def enrol_until(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            for n in range(MAX_ENROLMENTS):
                if stop.is_set():
                    return
                value = f"ROTATION-{n:03d}"
                body = {
                    "zone": "cn",
                    "site": SITE["cn"],
                    "identifiers": [{"system": MRN["cn"], "value": value}],
                    "birth_date": "1970-01-02",
                    "sex": "female",
                    "consent": {"research": True, "cross_border": False},
                }
                async with http.post(
                    f"{self.base_url}/v1/subjects", json=body, headers=self.clinic
                ) as response:
                    self.enrol_statuses[response.status] += 1
                    if response.status == 201:
                        self.enrolled[str((await response.json())["pseudonym"])] = value
                    else:
                        self.failures.append(await response.text())

    async def read_until(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            while not stop.is_set():
                for pseudonym, value in list(self.enrolled.items()):
                    status, problem = await self.read(http, pseudonym, value)
                    self.read_statuses[status] += 1
                    if problem:
                        self.failures.append(problem)
                await asyncio.sleep(0)

    async def read(
        self, http: aiohttp.ClientSession, pseudonym: str, value: str
    ) -> tuple[int, str | None]:
        async with http.get(
            f"{self.base_url}/fhir/Patient/{pseudonym}", headers=self.reader
        ) as response:
            text = await response.text()
            if response.status != 200:
                return response.status, text
            identifiers = [i["value"] for i in (await response.json())["identifier"]]
            return 200, None if identifiers == [value] else f"wrong identity: {identifiers}"


async def test_rotate_rewrap_retire_under_a_live_gateway_loses_no_identity(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    dsn = await databases.create("cn")
    credentials = await provision({"cn": dsn}, tmp_path)
    key_file = credentials.key_files["cn"]
    # A short check interval and lease keep the run short; NOTIFY does the prompt part.
    env = gateway_environment(
        {"cn": dsn}, credentials, free_port(), key_check_seconds="1", key_lease_seconds="5"
    )
    cli_env = {k: v for k, v in env.items() if k.startswith("GATEWAY_ZONE")} | {
        "GATEWAY_ZONES": "cn"
    }
    async with GatewayProcess(env, tmp_path / "gateway.log") as gateway:
        await gateway.start()
        await enrol(gateway, credentials.clinic["cn"], "cn", BEFORE)
        token = await smart_token(dsn, key_file, gateway.base_url)
        traffic = Traffic(gateway.base_url, credentials.clinic["cn"], token)
        rows = await fetch(dsn, "SELECT subject FROM subject_keys ORDER BY subject")
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            for row in rows:
                pseudonym = row["subject"]
                found = [
                    subject_value("cn", n)
                    for n in range(BEFORE)
                    if (await traffic.read(http, pseudonym, subject_value("cn", n)))[1] is None
                ]
                assert len(found) == 1, found
                traffic.enrolled[pseudonym] = found[0]

        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(traffic.enrol_until(stop)),
            asyncio.create_task(traffic.read_until(stop)),
        ]
        try:
            status, out = await keys_cli(
                cli_env, "rotate", "--zone", "cn", "--purpose", "kek", "--no-rewrap"
            )
            assert status == 0, out
            # Keys are still wrapped under version 1: retiring it now is refused.
            status, out = await keys_cli(cli_env, "retire", "--zone", "cn", "--version", "1")
            assert status == 1, out
            assert "nothing was retired" in out
            assert sorted(FileKeyProvider(key_file).load("cn").keys[KeyPurpose.KEK]) == [1, 2]

            async def enrolled_since_rotation() -> bool:
                return traffic.enrol_statuses[201] >= 10

            await wait_for("enrolments after the rotation", enrolled_since_rotation, timeout=60)
            for _attempt in range(3):
                status, out = await keys_cli(cli_env, "rewrap", "--zone", "cn")
                assert status in {0, 1}, out
                status, out = await keys_cli(
                    cli_env, "retire", "--zone", "cn", "--version", "1", "--wait", "60"
                )
                if status == 0:
                    break
                # A subject enrolled while its rewrap pass went by: rewrap again.
                assert "data keys are still wrapped" in out, out
            assert status == 0, out
            assert "kek version 1 retired" in out

            async def enrolled_since_retirement() -> bool:
                return traffic.enrol_statuses[201] >= 20

            await wait_for("enrolments after retiring", enrolled_since_retirement, timeout=60)
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 60)

        assert traffic.failures == [], traffic.failures[:3]
        assert set(traffic.enrol_statuses) == {201}, traffic.enrol_statuses
        assert set(traffic.read_statuses) == {200}, traffic.read_statuses
        assert sorted(FileKeyProvider(key_file).load("cn").keys[KeyPurpose.KEK]) == [2]
        wrapped = await fetch(dsn, "SELECT DISTINCT kek_version FROM subject_keys")
        assert [row["kek_version"] for row in wrapped] == [2]

        # The zone starts again on its key file, and every identity still opens.
        await gateway.kill()
        await gateway.start()
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            for pseudonym, value in traffic.enrolled.items():
                assert await traffic.read(http, pseudonym, value) == (200, None)
    assert len(traffic.enrolled) >= BEFORE + 20
