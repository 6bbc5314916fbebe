"""Consent changes and erasure over HTTP, against real zone databases."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import pytest

from gateway.models import ZoneSubject
from gateway.privacy import IdentityUnreadable, SealedIdentity
from gateway.services.erase import ErasureReason, delete_rows, erase, shred, start
from gateway.web.appkeys import ZONES
from tests.conftest import MRN, SITE, Gateway
from tests.helpers import CN_TZ, dump_database, fetch, reading

CANARY = "CANARY-ERASE-7731"
CANARY_WUID = "CANARY-ERASE-WUID-19"


def _minutes_ago(minutes: int) -> datetime:
    return datetime.now(CN_TZ).replace(microsecond=0) - timedelta(minutes=minutes)


async def _enrol_with_readings(gateway: Gateway) -> str:
    pseudonym = await gateway.enrol(
        "cn", CANARY, extra=[{"system": "urn:withings:userid", "value": CANARY_WUID}]
    )
    status, body = await gateway.ingest(
        "cn", [reading(CANARY, time=_minutes_ago(5)), reading(CANARY, time=_minutes_ago(4))]
    )
    assert status == 200, body
    return pseudonym


async def test_consent_withdrawal_is_stored_with_its_history_and_audited(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await _enrol_with_readings(gateway)
    response = await gateway.client.patch(
        f"/v1/subjects/{pseudonym}/consent",
        json={"research": False},
        headers=gateway.auth(gateway.clinic["cn"]),
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["consent"] == {"research": False, "cross_border": False}
    [subject] = await fetch(zone_dsns["cn"], "SELECT research_consent FROM subjects")
    assert subject["research_consent"] is False
    [change] = await fetch(zone_dsns["cn"], "SELECT * FROM consent_changes")
    assert (change["research"], change["cross_border"]) == (False, False)
    [audit] = await fetch(
        zone_dsns["cn"],
        "SELECT actor, subject, detail::text FROM audit_events WHERE action = 'consent'",
    )
    assert audit["subject"] == pseudonym
    assert audit["actor"].startswith(gateway.clinic["cn"].split("_")[2])
    # Readings keep being accepted for clinical use after the withdrawal.
    _, body = await gateway.ingest("cn", [reading(CANARY, time=_minutes_ago(3))])
    assert body["results"][0]["outcome"] == "created", body


async def test_another_sites_clinic_gets_404_like_a_missing_subject(gateway: Gateway) -> None:
    pseudonym = await _enrol_with_readings(gateway)
    other = await _other_site_clinic(gateway)
    for method, url, kwargs in (
        ("PATCH", f"/v1/subjects/{pseudonym}/consent", {"json": {"research": False}}),
        ("DELETE", f"/v1/subjects/{pseudonym}", {"params": {"reason": "withdrawn"}}),
        ("DELETE", "/v1/subjects/s1-missing", {"params": {"reason": "withdrawn"}}),
    ):
        response = await gateway.client.request(method, url, headers=gateway.auth(other), **kwargs)
        assert response.status == 404, await response.text()


async def _other_site_clinic(gateway: Gateway) -> str:
    from gateway.services.credentials import add_credential

    issued = await add_credential(
        gateway.client.app[ZONES], zone="cn", kind="clinic", owner="another-site"
    )
    return issued.token


async def test_erasure_needs_a_reason_from_the_closed_list(gateway: Gateway) -> None:
    pseudonym = await _enrol_with_readings(gateway)
    for params in ({}, {"reason": "because"}):
        response = await gateway.client.delete(
            f"/v1/subjects/{pseudonym}", params=params, headers=gateway.auth(gateway.clinic["cn"])
        )
        assert response.status == 400


async def test_erasure_removes_every_trace_and_old_identity_copies_stay_unreadable(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await _enrol_with_readings(gateway)
    zone = gateway.client.app[ZONES]["cn"]
    blind_indexes = [
        b for (b,) in await fetch(zone_dsns["cn"], "SELECT blind_index FROM subject_identifiers")
    ]
    # A "backup" of the identity table taken before the erasure, and of the key for contrast.
    [old_identity] = await fetch(zone_dsns["cn"], "SELECT identity FROM subjects")
    [old_key] = await fetch(zone_dsns["cn"], "SELECT kek_version FROM subject_keys")
    before = await dump_database(zone_dsns["cn"])
    assert pseudonym in before  # the scan below can fail

    response = await gateway.client.delete(
        f"/v1/subjects/{pseudonym}",
        json={"reason": "subject-request"},
        headers=gateway.auth(gateway.clinic["cn"]),
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "erased"
    assert body["removed"]["observations"] == 2

    dump = await dump_database(zone_dsns["cn"])
    outside_audit = (
        dump.split("-- audit_events")[0] + dump.split("-- audit_events")[1].split("\n-- ", 1)[-1]
    )
    for trace in (pseudonym, CANARY, CANARY_WUID, *blind_indexes):
        assert trace not in outside_audit
    # The audit log holds the pseudonym only as the subject of records, never in their detail,
    # and no identifier at all; the erase records say started and completed.
    audit = await fetch(
        zone_dsns["cn"], "SELECT action, actor, subject, detail::text AS d FROM audit_events"
    )
    for row in audit:
        assert pseudonym not in row["d"]
        assert pseudonym not in row["actor"]
        assert CANARY not in row["d"]
        assert CANARY_WUID not in row["d"]
    phases = [r["d"] for r in audit if r["action"] == "erase" and r["subject"] == pseudonym]
    assert len(phases) == 2
    assert '"started"' in phases[0]
    assert '"completed"' in phases[1]

    # The old identity row cannot be decrypted with the zone key: its data key is gone.
    with pytest.raises(IdentityUnreadable):
        zone.vault.open(
            pseudonym,
            SealedIdentity(
                wrapped_key=b"",
                kek_version=old_key["kek_version"],
                ciphertext=old_identity["identity"],
            ),
        )

    # Readings for the same identifiers are now refused as unknown, and nothing is stored.
    _, result = await gateway.ingest("cn", [reading(CANARY)])
    assert result["results"][0]["error"]["code"] == "unknown-subject", result
    assert await fetch(zone_dsns["cn"], "SELECT 1 FROM observations") == []

    # Re-enrolment creates a new subject that nothing links to the erased one.
    again = await gateway.enrol("cn", CANARY)
    assert again != pseudonym


async def test_erasing_twice_is_a_no_op_that_the_audit_log_notes(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await _enrol_with_readings(gateway)
    url = f"/v1/subjects/{pseudonym}?reason=withdrawn"
    first = await gateway.client.delete(url, headers=gateway.auth(gateway.clinic["cn"]))
    assert (await first.json())["status"] == "erased"
    second = await gateway.client.delete(url, headers=gateway.auth(gateway.clinic["cn"]))
    assert second.status == 200
    assert await second.json() == {
        "pseudonym": pseudonym,
        "status": "already-erased",
        "removed": {},
    }
    details = [
        r["d"]
        for r in await fetch(
            zone_dsns["cn"],
            "SELECT detail::text AS d FROM audit_events WHERE action = 'erase' ORDER BY seq",
        )
    ]
    assert '"repeat"' in details[-1]


@pytest.mark.parametrize("crash_after", [1, 2, 3])
async def test_an_erasure_interrupted_after_any_step_completes_when_run_again(
    gateway: Gateway, zone_dsns: dict[str, str], crash_after: int
) -> None:
    pseudonym = await _enrol_with_readings(gateway)
    zones = gateway.client.app[ZONES]
    zone = zones["cn"]
    reason = ErasureReason.SUBJECT_REQUEST
    await start(
        zone, actor="operator", subject=ZoneSubject(pseudonym), site=SITE["cn"], reason=reason
    )
    if crash_after >= 2:
        await shred(zone, pseudonym)
    if crash_after >= 3:
        await delete_rows(zone, pseudonym)

    result = await erase(
        zones, zone="cn", site=SITE["cn"], actor="operator", pseudonym=pseudonym, reason=reason
    )
    assert result.already_erased is False
    dump = (await dump_database(zone_dsns["cn"])).split("-- audit_events")[0]
    assert pseudonym not in dump
    phases = [
        r["d"]
        for r in await fetch(
            zone_dsns["cn"],
            "SELECT detail::text AS d FROM audit_events WHERE action = 'erase' ORDER BY seq",
        )
    ]
    assert '"completed"' in phases[-1]
    again = await erase(
        zones, zone="cn", site=SITE["cn"], actor="operator", pseudonym=pseudonym, reason=reason
    )
    assert again.already_erased is True


async def test_the_zone_key_alone_no_longer_opens_an_erased_subject(
    gateway: Gateway, zone_dsns: dict[str, str]
) -> None:
    """The identity table holds no key: the copy needs the `subject_keys` row erasure deletes."""
    pseudonym = await gateway.enrol("cn", "MRN-KEYS")
    columns = {
        r["column_name"]
        for r in await fetch(
            zone_dsns["cn"],
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'subjects'",
        )
    }
    assert not columns & {"wrapped_key", "kek_version"}
    conn = await asyncpg.connect(zone_dsns["cn"])
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM subject_keys WHERE subject = $1", pseudonym)
            == 1
        )
    finally:
        await conn.close()
    assert MRN["cn"]
