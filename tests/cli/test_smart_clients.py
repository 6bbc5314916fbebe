"""`wearable-gateway clients add|revoke`: register a SMART backend client from a JWKS file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.cli.test_commands import run
from tests.conftest import DatabaseFactory


async def test_clients_add_prints_a_client_id_and_revoke_revokes_it(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    key_file = tmp_path / "cn.keys.json"
    env = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": await databases.create("cli"),
        "GATEWAY_ZONE_CN_KEY_FILE": str(key_file),
    }
    assert run(["keys", "init", "--zone", "cn", "--out", str(key_file)], env).returncode == 0
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "clinic-2026"}
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    add = [
        "clients", "add", "--zone", "cn", "--site", "hainan-general", "--role", "clinic",
        "--jwks", str(jwks), "--scopes", "system/Observation.rs system/Patient.rs",
    ]  # fmt: skip

    added = run(add, env)
    assert added.returncode == 0, added.stderr
    client_id = added.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"wgc_cn_[0-9a-f]{32}", client_id)

    revoke = ["clients", "revoke", "--zone", "cn", "--client-id", client_id]
    assert run(revoke, env).returncode == 0
    assert run(revoke, env).returncode == 1

    jwks.write_text(json.dumps({"keys": [{**jwk, "d": "AAAA"}]}), encoding="utf-8")
    refused = run(add, env)
    assert refused.returncode == 2
    assert "private key" in refused.stderr
