"""`wearable-gateway subjects consent|erase` and `residency report`, run as an operator would: the
real CLI in a subprocess, against the zone databases of a running gateway."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from gateway.residency.export_policy import TransferMechanism
from gateway.settings import Settings
from gateway.storage.subjects import SUBJECT_TABLES
from tests.cli.test_commands import run
from tests.conftest import MRN, Gateway
from tests.helpers import CN_TZ, fetch, reading
from tests.web.bulk_export_helpers import export, researcher, study

CANARY = "CANARY-CLI-ERASE-4410"


def both_zones(settings: Settings) -> dict[str, str]:
    env = {"GATEWAY_ZONES": "cn,eu"}
    for name, zone in settings.zones.items():
        env[f"GATEWAY_ZONE_{name.upper()}_DATABASE_URL"] = zone.database_url
        env[f"GATEWAY_ZONE_{name.upper()}_KEY_FILE"] = str(zone.key_file)
    return env


def _minutes_ago(minutes: int) -> datetime:
    return datetime.now(CN_TZ).replace(microsecond=0) - timedelta(minutes=minutes)


async def _enrol_with_readings(gateway: Gateway, mrn: str, *, cross_border: bool = False) -> str:
    pseudonym = await gateway.enrol(
        "cn", mrn, consent={"research": True, "cross_border": cross_border}
    )
    status, body = await gateway.ingest(
        "cn", [reading(mrn, time=_minutes_ago(5)), reading(mrn, time=_minutes_ago(4))]
    )
    assert status == 200, body
    return pseudonym


async def _rows_of(dsn: str, pseudonym: str) -> dict[str, int]:
    counts = {}
    for table, column in SUBJECT_TABLES:
        # Names from the literal table in gateway/storage/subjects.py.
        query = f"SELECT count(*) AS n FROM {table} WHERE {column} = $1"
        [row] = await fetch(dsn, query, pseudonym)
        counts[table] = row["n"]
    return counts


async def test_subjects_consent_changes_it_as_the_operator_and_audits_it(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await _enrol_with_readings(gateway, "MRN-CONSENT-1")
    env = both_zones(settings)

    changed = run(
        ["subjects", "consent", "--zone", "cn", "--pseudonym", pseudonym, "--research", "no"], env
    )

    assert changed.returncode == 0, changed.stderr
    assert "research consent no, cross-border consent no" in changed.stdout
    [subject] = await fetch(zone_dsns["cn"], "SELECT research_consent FROM subjects")
    assert subject["research_consent"] is False
    [history] = await fetch(zone_dsns["cn"], "SELECT actor, research FROM consent_changes")
    assert (history["actor"], history["research"]) == ("operator", False)
    [audit] = await fetch(
        zone_dsns["cn"], "SELECT actor, subject FROM audit_events WHERE action = 'consent'"
    )
    assert (audit["actor"], audit["subject"]) == ("operator", pseudonym)

    nothing = run(["subjects", "consent", "--zone", "cn", "--pseudonym", pseudonym], env)
    assert nothing.returncode == 2
    assert "give research and/or cross_border" in nothing.stderr
    missing = run(
        ["subjects", "consent", "--zone", "cn", "--pseudonym", "s1-missing", "--research", "yes"],
        env,
    )
    assert missing.returncode == 2
    assert "no such subject" in missing.stderr
    # The subject lives in cn: the eu database does not know it.
    wrong_zone = run(
        ["subjects", "consent", "--zone", "eu", "--pseudonym", pseudonym, "--research", "yes"],
        env,
    )
    assert wrong_zone.returncode == 2


async def test_subjects_erase_deletes_every_row_and_a_second_run_is_a_no_op(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await _enrol_with_readings(gateway, CANARY)
    kept = await _enrol_with_readings(gateway, "MRN-KEPT-1")
    env = both_zones(settings)
    erase = ["subjects", "erase", "--zone", "cn", "--pseudonym", pseudonym]

    erased = run([*erase, "--reason", "subject-request"], env)

    assert erased.returncode == 0, erased.stderr
    assert f"subject {pseudonym} in zone cn: erased; rows deleted: " in erased.stdout
    assert "observations 2" in erased.stdout
    # Its data key and blind index went in the earlier steps (shred, start): not counted here.
    assert "subjects 1" in erased.stdout
    assert set((await _rows_of(zone_dsns["cn"], pseudonym)).values()) == {0}
    assert (await _rows_of(zone_dsns["cn"], kept))["observations"] == 2
    assert CANARY not in erased.stdout + erased.stderr

    again = run([*erase, "--reason", "subject-request"], env)
    assert again.returncode == 0, again.stderr
    assert "already erased; rows deleted: none" in again.stdout
    phases = [
        r["d"]
        for r in await fetch(
            zone_dsns["cn"],
            "SELECT detail::text AS d FROM audit_events "
            "WHERE action = 'erase' AND actor = 'operator' ORDER BY seq",
        )
    ]
    assert len(phases) == 3
    assert ['"started"' in phases[0], '"completed"' in phases[1], '"repeat"' in phases[2]] == [
        True,
        True,
        True,
    ]
    verified = run(["audit", "verify", "--zone", "cn"], env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_subjects_erase_needs_a_reason_code_and_never_echoes_free_text(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    pseudonym = await _enrol_with_readings(gateway, CANARY)
    env = both_zones(settings)
    erase = ["subjects", "erase", "--zone", "cn", "--pseudonym", pseudonym]

    without = run(erase, env)
    assert without.returncode == 2
    assert "the following arguments are required: --reason" in without.stderr
    free_text = run([*erase, "--reason", f"{CANARY} asked by phone"], env)
    assert free_text.returncode == 2
    assert (
        "--reason: not a reason code; give one of: subject-request, withdrawn, "
        "legal-obligation, error" in free_text.stderr
    )
    # A free-text reason may name the person: it is not repeated back.
    assert CANARY not in free_text.stderr + free_text.stdout
    assert (await _rows_of(zone_dsns["cn"], pseudonym))["subjects"] == 1

    unknown = run(
        ["subjects", "erase", "--zone", "cn", "--pseudonym", "s1-missing", "--reason", "error"],
        env,
    )
    assert unknown.returncode == 2
    assert "no such subject" in unknown.stderr


async def test_residency_report_counts_per_zone_and_names_foreign_rows_by_table_only(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    first = await _enrol_with_readings(gateway, CANARY, cross_border=True)
    await _enrol_with_readings(gateway, "MRN-RESIDENT-2", cross_border=True)
    await gateway.enrol("eu", "MRN-EU-1")
    status, body = await gateway.ingest(
        "eu", [reading("MRN-EU-1", system=MRN["eu"], time=_minutes_ago(5))]
    )
    assert status == 200, body
    team = await researcher(gateway)
    await study(gateway, "domestic", [team])
    await study(
        gateway,
        "abroad",
        [team],
        country="DE",
        transfer=TransferMechanism("standard-contract", "SC-2026-0042"),
    )
    await export(gateway, team, "domestic")
    await export(gateway, team, "abroad")
    await export(gateway, team, "abroad")
    env = both_zones(settings)

    report = run(["residency", "report"], env)

    assert report.returncode == 0, report.stdout + report.stderr
    cn, eu = report.stdout.split("zone eu\n")
    assert cn.startswith("zone cn\n")
    assert "  subjects: 2\n" in cn
    assert "  readings: 4\n" in cn
    year = f"since {datetime.now(UTC).year}-01-01"
    assert f"  research extracts released {year}: 3\n" in cn
    assert f"  export requests refused {year}: 0\n" in cn
    assert f"  cross-border releases {year}: 2\n" in cn
    assert "    DE standard-contract: 2\n" in cn
    assert "residency check: ok" in cn
    assert "  subjects: 1\n" in eu
    assert "  readings: 1\n" in eu
    assert "residency check: ok" in eu
    only_eu = run(["residency", "report", "--zone", "eu"], env)
    assert only_eu.returncode == 0, only_eu.stderr
    assert "zone cn" not in only_eu.stdout

    # A cn subject's reading copied into the eu database, by hand.
    [row] = await fetch(
        zone_dsns["cn"],
        "SELECT subject, id, code, device, effective_start, effective_end, issued, "
        "source_format, resource::text AS resource FROM observations WHERE subject = $1 LIMIT 1",
        first,
    )
    await fetch(
        zone_dsns["eu"],
        "INSERT INTO observations (subject, id, code, device, effective_start, effective_end, "
        "issued, source_format, resource) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
        *row.values(),
    )

    failed = run(["residency", "report"], env)

    assert failed.returncode == 1, failed.stdout + failed.stderr
    cn, eu = failed.stdout.split("zone eu\n")
    assert "residency check: ok" in cn
    assert "residency check: FAILED" in eu
    assert "observations 1" in eu
    for trace in (first, CANARY):
        assert trace not in failed.stdout + failed.stderr


async def test_residency_report_checks_audit_subjects_and_keeps_erased_ones(
    gateway: Gateway, settings: Settings, zone_dsns: dict[str, str]
) -> None:
    """Audit records outlive erasure, so an erased subject's are this zone's own; a subject value
    the zone never held (another zone's pseudonym) in `audit_events` fails the check."""
    await _enrol_with_readings(gateway, "MRN-AUDIT-1")
    erased = await _enrol_with_readings(gateway, "MRN-AUDIT-2")
    foreign = await gateway.enrol("eu", "MRN-AUDIT-EU")
    env = both_zones(settings)
    gone = run(
        ["subjects", "erase", "--zone", "cn", "--pseudonym", erased, "--reason", "error"], env
    )
    assert gone.returncode == 0, gone.stderr
    [left] = await fetch(
        zone_dsns["cn"], "SELECT count(*) AS n FROM audit_events WHERE subject = $1", erased
    )
    assert left["n"] >= 3, "enrol and erase records of the erased subject: proves nothing"

    clean = run(["residency", "report"], env)

    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.count("residency check: ok") == 2

    # Planted as the test superuser, outside the gateway (which now records only subjects that
    # resolved in its zone): the append-only trigger refuses UPDATE/DELETE, not INSERT.
    await fetch(
        zone_dsns["cn"],
        "INSERT INTO audit_events (seq, recorded_at, action, actor, subject, outcome, detail, "
        "key_version, prev_mac, mac) SELECT max(seq) + 1, now(), 'search', 'k-test', $1, "
        "'success', '{}'::jsonb, 1, $2, $3 FROM audit_events",
        foreign,
        os.urandom(32),
        os.urandom(32),
    )

    failed = run(["residency", "report"], env)

    assert failed.returncode == 1, failed.stdout + failed.stderr
    cn, eu = failed.stdout.split("zone eu\n")
    assert "residency check: FAILED, rows of no subject of this zone: audit_events 1\n" in cn
    assert "residency check: ok" in eu
    assert foreign not in failed.stdout + failed.stderr
