"""Migration 0011 (issue 11): device text stored before it is mapped through the closed tables of
gateway.devices, and text they do not know leaves no trace in the rows."""

from __future__ import annotations

import asyncpg

from gateway.storage import migrate_database
from tests.helpers import dump_database

CANARY = "CANARY-DEVICE-TEXT-4b1e"


async def test_stored_device_text_is_mapped_to_its_family_and_maker_or_other(databases) -> None:
    dsn = await databases.create("devices_before_0011", migrated=False)
    await migrate_database(dsn, up_to=10)  # the schema as a gateway before 0011 left it
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO subjects (pseudonym, site, research_consent, cross_border_consent, "
            "identity) VALUES ('s1-x', 'site', false, false, '')"
        )
        # The rows as a gateway before 0011 wrote them: the payloads' own text.
        await conn.executemany(
            "INSERT INTO devices (subject, pseudonym, model, manufacturer, first_seen) "
            "VALUES ('s1-x', $1, $2, $3, now())",
            [
                ("d1-a", "BPM Connect", "Withings"),
                ("d1-b", " Watch6,2 ", "Apple Inc."),
                ("d1-c", f"{CANARY}-model", f"{CANARY}-maker"),
                ("d1-d", None, None),
                ("d1-e", "HEM-9200T", None),
            ],
        )
    finally:
        await conn.close()

    applied = await migrate_database(dsn)

    assert applied[0].version == 11
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT pseudonym, model, manufacturer FROM devices ORDER BY 1")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("d1-a", "Withings BPM", "Withings"),
        ("d1-b", "Apple Watch", "Apple"),
        ("d1-c", "other", "other"),
        ("d1-d", None, None),
        ("d1-e", "Omron BPM", None),
    ]
    assert CANARY not in await dump_database(dsn)
