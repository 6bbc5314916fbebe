"""Test support: empty a zone database in place, in milliseconds.

Cloning and dropping a database from a template costs ~0.35 s each; the suite instead keeps its
zone databases for the whole session and returns them to the state of a freshly migrated one
between tests. Nothing in the gateway calls this: it needs superuser rights, on purpose.

The audit log is append-only by a statement trigger (migration 0005) that refuses TRUNCATE for
every session in which triggers fire. The reset gets past it with `SET LOCAL
session_replication_role = replica`, in its one transaction only:

- it is a superuser-only setting (PGC_SUSET), so the gateway's own role — which should not be a
  superuser in production (THREAT_MODEL) — cannot use this path, and a superuser already could
  (that is in the migration's comment): the reset opens no door that was closed;
- it needs no change to the trigger, hence no migration; a setting the trigger honoured would
  be one more thing the production trigger function must get right forever;
- `SET LOCAL` ends with the transaction, so no pooled connection is ever left with triggers off.
"""

from __future__ import annotations

import re

import asyncpg

# Monthly partitions the writer creates on demand (`observations_y2026m09`, …): the reset drops
# them, so that each test starts with the partitions of a freshly migrated database (none).
_ON_DEMAND_PARTITION = re.compile(r"^[a-z_]+_y\d{4}m\d{2}$")

_TABLES = """
SELECT c.relname, c.relispartition
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations'
ORDER BY c.relname
"""

# User triggers a test switched off (`ALTER TABLE … DISABLE TRIGGER`, as the audit-tampering
# tests do): they are switched back on, as the migrations left them.
_DISABLED_TRIGGERS = """
SELECT c.relname, t.tgname
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND NOT t.tgisinternal AND t.tgenabled = 'D'
"""


# Rows a migration itself inserts, which `migrate` leaves in an otherwise empty database: the
# reset puts them back after the TRUNCATE. A test (tests/storage/test_testing_reset.py) compares
# every table of a reset database with a freshly migrated one, so a migration that seeds a new
# table fails there until it is listed here.
_SEEDS: tuple[str, ...] = (
    "INSERT INTO key_ring_state DEFAULT VALUES",  # 0010: the one row of the published key ring
)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def reset_for_tests(dsn: str) -> None:
    """Return the database at `dsn` to the state `migrate` leaves: every table but
    `schema_migrations` empty, identity sequences restarted, on-demand partitions dropped and
    disabled user triggers enabled. Other sessions on that database are ended first (a test's
    leftover connection would otherwise hold locks the TRUNCATE waits for)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            rows = await conn.fetch(_TABLES)
            made = [r["relname"] for r in rows if r["relispartition"]]
            made = [name for name in made if _ON_DEMAND_PARTITION.fullmatch(name)]
            if made:
                await conn.execute("DROP TABLE " + ", ".join(_quoted(n) for n in made))
            for trigger in await conn.fetch(_DISABLED_TRIGGERS):
                await conn.execute(
                    f"ALTER TABLE {_quoted(trigger['relname'])} "
                    f"ENABLE TRIGGER {_quoted(trigger['tgname'])}"
                )
            tables = [r["relname"] for r in rows if r["relname"] not in made]
            # One statement: TRUNCATE checks that every table referenced by a foreign key is in
            # the same command, and RESTART IDENTITY resets the sequences the tables own.
            await conn.execute(
                "TRUNCATE " + ", ".join(_quoted(n) for n in tables) + " RESTART IDENTITY"
            )
            for seed in _SEEDS:
                await conn.execute(seed)
    finally:
        await conn.close()
