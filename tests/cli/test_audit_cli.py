"""`wearable-gateway audit verify|export`, run as an operator would."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson
from fhir.resources.R4B.auditevent import AuditEvent

from gateway.privacy import ZoneKeyRing
from tests.cli.test_commands import run
from tests.conftest import DatabaseFactory


async def prepared_zone(tmp_path: Path, databases: DatabaseFactory) -> tuple[dict[str, str], str]:
    dsn = await databases.create("cli_audit")
    key_file = tmp_path / "cn.keys.json"
    ZoneKeyRing.generate("cn").write(key_file)
    env = {
        "GATEWAY_ZONES": "cn",
        "GATEWAY_ZONE_CN_DATABASE_URL": dsn,
        "GATEWAY_ZONE_CN_KEY_FILE": str(key_file),
    }
    for args in (
        ["vendors", "add", "--zone", "cn", "--name", "acme"],
        ["clinics", "add", "--zone", "cn", "--site", "hainan-general"],
    ):
        issued = run(args, env)
        assert issued.returncode == 0, issued.stderr
    return env, dsn


async def test_verify_passes_an_untouched_log_and_names_the_first_bad_record(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    env, dsn = await prepared_zone(tmp_path, databases)
    revoked = run(["credentials", "revoke", "--zone", "cn", "--key-id", "no-such-key"], env)
    assert revoked.returncode == 1

    good = run(["audit", "verify", "--zone", "cn"], env)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: 3 records")

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
        await conn.execute("UPDATE audit_events SET outcome = 'success' WHERE seq = 3")
    finally:
        await conn.close()
    bad = run(["audit", "verify", "--zone", "cn"], env)
    assert bad.returncode == 1
    assert "audit record 3 changed" in bad.stdout


async def test_export_writes_fhir_audit_event_ndjson_to_a_new_file(
    tmp_path: Path, databases: DatabaseFactory
) -> None:
    env, _ = await prepared_zone(tmp_path, databases)
    out = tmp_path / "audit.ndjson"

    exported = run(["audit", "export", "--zone", "cn", "--out", str(out)], env)

    assert exported.returncode == 0, exported.stderr
    lines = out.read_bytes().splitlines()
    assert len(lines) == 2
    for line in lines:
        event = AuditEvent.model_validate(orjson.loads(line))
        assert event.type.code == "110113"
    again = run(["audit", "export", "--zone", "cn", "--out", str(out)], env)
    assert again.returncode == 2
    assert "cannot create" in again.stderr
    to_stdout = run(["audit", "export", "--zone", "cn"], env)
    assert to_stdout.stdout.encode().splitlines() == lines
