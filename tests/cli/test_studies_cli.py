"""`wearable-gateway studies add`, run as an operator would, against a migrated zone database."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from gateway.privacy import ZoneKeyRing
from tests.cli.test_commands import run
from tests.conftest import DatabaseFactory

COMMON = [
    "studies", "add", "--zone", "eu", "--title", "Resting HR in shift workers",
    "--ethics", "EC-2026-17", "--recipient-org", "Uni Example", "--measures", "8867-4,40443-4",
    "--shift-days", "30", "--k", "3", "--expires", "2030-12-31",
]  # fmt: skip


def researcher_jwks(folder: Path) -> Path:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "researcher-1"}
    path = folder / "jwks.json"
    path.write_bytes(orjson.dumps({"keys": [jwk]}))
    return path


async def test_studies_add_registers_a_domestic_and_refuses_an_unsafe_cross_border_study(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    folder = tmp_path
    dsn = await databases.create("studies")
    key_file = folder / "eu.keys.json"
    ZoneKeyRing.generate("eu").write(key_file)
    env = {"GATEWAY_ZONES": "eu", "GATEWAY_ZONE_EU_DATABASE_URL": dsn,
           "GATEWAY_ZONE_EU_KEY_FILE": str(key_file)}  # fmt: skip

    registered = run(
        ["clients", "add", "--zone", "eu", "--site", "uni-example", "--role", "researcher",
         "--jwks", str(researcher_jwks(folder)), "--scopes", "system/Observation.rs"],
        env,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    client = next(w for w in registered.stdout.split() if w.startswith("wgc_eu_")).strip(".")
    common = [*COMMON, "--researcher-client", client]

    domestic = run([*common, "--id", "hr-shift", "--recipient-country", "DE"], env)
    assert domestic.returncode == 0, domestic.stderr
    assert "hr-shift" in domestic.stdout

    # China is outside the eu zone: without a transfer mechanism the study is refused.
    abroad = run([*common, "--id", "hr-abroad", "--recipient-country", "CN"], env)
    assert abroad.returncode == 2
    assert "transfer" in abroad.stderr.lower()

    expired = run(
        [*common, "--id", "hr-old", "--recipient-country", "DE", "--expires", "2020-01-01"], env
    )
    assert expired.returncode == 2

    conn = await asyncpg.connect(dsn)
    try:
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM studies ORDER BY id")]
    finally:
        await conn.close()
    assert ids == ["hr-shift"]
