"""The audit service: records are sealed into a keyed chain that `verify` checks, naming the first
record that was changed, deleted or moved; the log exports as FHIR R4 AuditEvents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from gateway.models import ZoneSubject
from gateway.privacy import KeyPurpose, ZoneKeyRing
from gateway.privacy.audit_chain import AuditChain, AuditEntry, InvalidAuditDetail
from gateway.runtime.zones import Zone
from gateway.services.audit import AuditAction, AuditOutcome, export_fhir, record, verify
from gateway.storage import ZoneDatabase
from tests.conftest import MRN, Gateway
from tests.test_leaks import CANARIES

KEYRING = ZoneKeyRing.generate("cn")


@pytest.fixture
async def cn(zone_dsns: dict[str, str]) -> AsyncIterator[Zone]:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"], max_size=4)
    yield Zone.build(db, KEYRING)
    await db.close()


@pytest.fixture
async def superuser(zone_dsns: dict[str, str]) -> AsyncIterator[asyncpg.Connection]:
    """A session that, like an operator with the owner's or a superuser's rights, has switched
    the append-only trigger off: exactly the tampering `verify` must detect."""
    conn = await asyncpg.connect(zone_dsns["cn"])
    await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    yield conn
    await conn.close()


async def record_reads(zone: Zone, count: int) -> None:
    for n in range(count):
        await record(
            zone,
            action=AuditAction.READ,
            actor="k-clinic",
            subject=ZoneSubject(f"s1-{n:032d}"),
            outcome=AuditOutcome.SUCCESS,
            detail={"resource": "Observation", "results": n},
        )


async def test_an_untouched_log_verifies_and_reports_its_head(cn: Zone) -> None:
    assert (await verify(cn)).ok
    await record_reads(cn, 5)

    report = await verify(cn)

    assert report.ok
    assert report.checked == 5
    assert report.head_seq == 5
    assert report.first_bad_seq is None


async def test_records_made_before_an_audit_key_rotation_still_verify(
    zone_dsns: dict[str, str],
) -> None:
    db = await ZoneDatabase.connect("cn", zone_dsns["cn"], max_size=2)
    try:
        await record_reads(Zone.build(db, KEYRING), 2)
        rotated = Zone.build(db, KEYRING.with_new_version(KeyPurpose.AUDIT))
        await record_reads(rotated, 2)

        report = await verify(rotated)
    finally:
        await db.close()
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        versions = [
            r["key_version"] for r in await conn.fetch("SELECT key_version FROM audit_events")
        ]
    finally:
        await conn.close()
    assert report.ok
    assert report.checked == 4
    assert sorted(versions) == [1, 1, 2, 2]


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 3",
        'UPDATE audit_events SET detail = \'{"resource": "Observation", "results": 99}\' '
        "WHERE seq = 3",
        "UPDATE audit_events SET subject = NULL WHERE seq = 3",
        "UPDATE audit_events SET recorded_at = recorded_at - interval '1 day' WHERE seq = 3",
        "UPDATE audit_events SET key_version = 2 WHERE seq = 3",
        "UPDATE audit_events SET outcome = 'refused' WHERE seq = 3",
    ],
)
async def test_verify_names_an_edited_record_as_changed(
    cn: Zone, superuser: asyncpg.Connection, edit: str
) -> None:
    await record_reads(cn, 5)
    await superuser.execute(edit)

    report = await verify(cn)

    assert not report.ok
    assert (report.first_bad_seq, report.problem, report.checked) == (3, "changed", 2)


async def test_verify_names_the_first_missing_seq_of_a_deleted_record(
    cn: Zone, superuser: asyncpg.Connection
) -> None:
    await record_reads(cn, 5)
    await superuser.execute("DELETE FROM audit_events WHERE seq = 3")

    report = await verify(cn)

    assert (report.ok, report.first_bad_seq, report.problem) == (False, 3, "deleted")


async def test_verify_sees_a_deletion_hidden_by_renumbering_the_records_after_it(
    cn: Zone, superuser: asyncpg.Connection
) -> None:
    await record_reads(cn, 5)
    await superuser.execute("DELETE FROM audit_events WHERE seq = 1")
    for seq in range(2, 6):
        await superuser.execute("UPDATE audit_events SET seq = $1 WHERE seq = $2", seq - 1, seq)

    report = await verify(cn)

    assert (report.ok, report.first_bad_seq, report.problem) == (False, 1, "deleted")


async def test_verify_names_swapped_records_as_reordered(
    cn: Zone, superuser: asyncpg.Connection
) -> None:
    await record_reads(cn, 5)
    await superuser.execute("UPDATE audit_events SET seq = 1000 WHERE seq = 2")
    await superuser.execute("UPDATE audit_events SET seq = 2 WHERE seq = 4")
    await superuser.execute("UPDATE audit_events SET seq = 4 WHERE seq = 1000")

    report = await verify(cn)

    assert (report.ok, report.first_bad_seq, report.problem) == (False, 2, "reordered")


async def test_verify_names_a_skipped_seq_number_as_a_gap(
    cn: Zone, superuser: asyncpg.Connection
) -> None:
    await record_reads(cn, 5)
    await superuser.execute("UPDATE audit_events SET seq = 9 WHERE seq = 5")

    report = await verify(cn)

    assert (report.ok, report.first_bad_seq, report.problem) == (False, 5, "gap")


async def test_a_chain_rewritten_without_the_audit_key_is_detected(
    cn: Zone, superuser: asyncpg.Connection
) -> None:
    await record_reads(cn, 4)
    # A forger with write access but another key re-seals every record, from the first, after
    # changing one: the chain is internally consistent but not under the zone's key.
    forger = AuditChain(ZoneKeyRing.generate("cn"))
    await superuser.execute("UPDATE audit_events SET actor = 'forged' WHERE seq = 2")
    prev = bytes(32)
    for row in await superuser.fetch("SELECT * FROM audit_events ORDER BY seq"):
        entry = AuditEntry(
            zone="cn",
            recorded_at=row["recorded_at"],
            action=row["action"],
            actor=row["actor"],
            subject=row["subject"],
            outcome=row["outcome"],
            detail=orjson.loads(row["detail"]),
            key_version=row["key_version"],
        )
        mac = forger.seal(prev, entry)
        await superuser.execute(
            "UPDATE audit_events SET prev_mac = $1, mac = $2 WHERE seq = $3", prev, mac, row["seq"]
        )
        prev = mac

    report = await verify(cn)

    assert (report.ok, report.first_bad_seq, report.problem) == (False, 1, "changed")


async def test_records_appended_after_tampering_do_not_hide_it(
    cn: Zone, superuser: asyncpg.Connection
) -> None:
    await record_reads(cn, 3)
    await superuser.execute("UPDATE audit_events SET actor = 'x' WHERE seq = 2")
    await record_reads(cn, 3)

    report = await verify(cn)

    assert (report.first_bad_seq, report.problem) == (2, "changed")


@pytest.mark.parametrize(
    "detail",
    [{"value": 72.5}, {"nested": {"deeper": [1.0]}}, {"blob": b"bytes"}, {"text": "a\x00b"}],
)
async def test_detail_that_could_hold_values_or_not_survive_jsonb_is_refused(
    cn: Zone, detail: dict[str, Any]
) -> None:
    with pytest.raises(InvalidAuditDetail):
        await record(
            cn,
            action=AuditAction.READ,
            actor="k",
            subject=None,
            outcome=AuditOutcome.SUCCESS,
            detail=detail,
        )
    assert await cn.db.audit.count() == 0


async def test_an_unknown_outcome_is_refused(cn: Zone) -> None:
    with pytest.raises(ValueError, match="maybe"):
        await record(
            cn, action=AuditAction.READ, actor="k", subject=None, outcome="maybe", detail={}
        )


async def test_every_action_exports_as_a_valid_r4_audit_event(cn: Zone) -> None:
    for n, action in enumerate(AuditAction):
        await record(
            cn,
            action=action,
            actor=f"k-{n}",
            subject=ZoneSubject("s1-abcdefghijklmnopqrstuvwxyz234567") if n % 2 else None,
            outcome=list(AuditOutcome)[n % 3],
            detail={"count": n, "params": ["code", "date"], "flag": True, "none": None},
        )

    lines = [line async for line in export_fhir(cn)]

    assert len(lines) == len(AuditAction)
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    for n, (line, action) in enumerate(zip(lines, AuditAction, strict=True)):
        resource = orjson.loads(line)
        AuditEvent.model_validate(resource)
        assert resource["agent"][0]["who"]["identifier"]["value"] == f"k-{n}"
        assert resource["outcome"] == ["0", "4", "8"][n % 3]
        assert {"system": "urn:wearable-gateway:audit-action", "code": str(action)} in resource[
            "subtype"
        ]
        references = [e["what"].get("reference") for e in resource["entity"]]
        if n % 2:
            assert "Patient/s1-abcdefghijklmnopqrstuvwxyz234567" in references
        else:
            assert all(ref is None for ref in references)


async def test_read_and_search_use_the_fhir_rest_event_type(cn: Zone) -> None:
    for action in (AuditAction.READ, AuditAction.SEARCH):
        await record(
            cn, action=action, actor="k", subject=None, outcome=AuditOutcome.SUCCESS, detail={}
        )

    read, search = [orjson.loads(line) async for line in export_fhir(cn)]

    for resource in (read, search):
        assert resource["type"]["code"] == "rest"
        assert resource["type"]["system"] == (
            "http://terminology.hl7.org/CodeSystem/audit-event-type"
        )
    assert (read["action"], search["action"]) == ("R", "E")


async def test_enrolment_and_credentials_are_audited_without_identifiers(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await gateway.enrol(
        "cn",
        CANARIES["mrn"],
        extra=[{"system": "urn:withings:userid", "value": CANARIES["account"]}],
    )
    clinic_key_id = gateway.clinic["cn"].split("_")[2]

    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        rows = await conn.fetch("SELECT * FROM audit_events ORDER BY seq")
        dump = "\n".join(
            r["row"] for r in await conn.fetch("SELECT t::text AS row FROM audit_events t")
        )
    finally:
        await conn.close()

    assert [r["action"] for r in rows] == ["credential-issue", "credential-issue", "enrol"]
    enrol = rows[-1]
    assert (enrol["actor"], enrol["subject"], enrol["outcome"]) == (
        clinic_key_id,
        pseudonym,
        "success",
    )
    assert orjson.loads(enrol["detail"])["identifiers"] == 2
    for canary in CANARIES.values():
        assert canary not in dump
    assert MRN["cn"] not in dump
    assert "urn:withings:userid" not in dump
